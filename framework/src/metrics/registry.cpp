#include "coromesh/metrics/registry.hpp"

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <stdexcept>
#include <utility>

namespace coromesh::metrics {

MetricsRegistry::MetricsRegistry() : MetricsRegistry(std::make_shared<prometheus::Registry>()) {}

MetricsRegistry::MetricsRegistry(std::shared_ptr<prometheus::Registry> registry)
    : registry_(std::move(registry)) {
  if (!registry_) {
    throw std::invalid_argument("MetricsRegistry: registry must not be null");
  }
}

MetricsRegistry::~MetricsRegistry() = default;

void MetricsRegistry::add_collectable(std::shared_ptr<prometheus::Collectable> collectable) {
  if (!collectable) {
    throw std::invalid_argument("MetricsRegistry::add_collectable: collectable must not be null");
  }
  std::lock_guard lock(mutex_);
  collectables_.push_back(std::move(collectable));
}

std::string MetricsRegistry::render() const {
  // Copy the list under the lock, collect outside it: a slow collectable (the process
  // collector reads /proc) must not hold up add_collectable().
  std::vector<std::shared_ptr<prometheus::Collectable>> extra;
  {
    std::lock_guard lock(mutex_);
    extra = collectables_;
  }
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (const auto& collectable : extra) {
    auto more = collectable->Collect();
    families.insert(families.end(), std::make_move_iterator(more.begin()),
                    std::make_move_iterator(more.end()));
  }
  return prometheus::TextSerializer{}.Serialize(families);
}

}  // namespace coromesh::metrics
