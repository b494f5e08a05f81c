// libFuzzer target for the QoS override reader (qos::apply_override): the JSON document an
// operator (or anyone with write access to Consul KV) puts under
// coromesh/qos/<service>/<operation>. Whatever it holds, the reader refuses it with
// std::invalid_argument or returns a set that passes every declaration check, whose
// running objects can be built and whose summary fits Consul's Meta limit. Anything else
// (another exception, a crash, undefined behaviour) is a finding.
//
// The first byte picks the declared set the override applies to, the rest is the
// document. Long run: tests/fuzz/README.md.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

#include "coromesh/qos/policy_runtime.hpp"

namespace {

using namespace std::chrono_literals;
namespace qos = coromesh::qos;

void check(bool condition) {
  if (!condition) {
    std::abort();  // libFuzzer reports the input that got here
  }
}

qos::PolicySet declared(std::uint8_t which) {
  switch (which % 3) {
    case 0:
      return {};  // nothing declared: the override adds every kind it names
    case 1:       // the design's example
      return qos::to_policy_set(
          qos::server(qos::timeout{100ms}, qos::rate_limit{5000, 1s},
                      qos::circuit_breaker{.failure_rate = 0.5, .window = 100}, qos::log{}));
    default:  // every kind
      return qos::to_policy_set(
          qos::client(qos::timeout{100ms}, qos::retry{}, qos::circuit_breaker{}, qos::rate_limit{},
                      qos::bulkhead{}, qos::adaptive_limit{}, qos::log{}, qos::metrics{}));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::string_view document(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto base = declared(data[0]);
  qos::PolicySet set;
  try {
    set = qos::apply_override(base, document);
  } catch (const std::invalid_argument& e) {
    check(std::string_view(e.what()).size() > 0);
    return 0;
  }
  check(qos::validate(set).empty());
  check(qos::summarize(set).size() <= 512);
  // The objects a live override swaps in: building them must not throw, allocate absurd
  // amounts (the bounds see to it) or overflow.
  const auto objects = qos::build_policies(set, nullptr, {});
  check(objects != nullptr && objects->spec == set);
  return 0;
}
