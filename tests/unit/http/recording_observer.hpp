#pragma once

// A ServerObserver for tests: records the status of every finished request, as a
// service's requests_total would count it.

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "coromesh/http/server.hpp"

namespace coromesh::http::testing {

class RecordingObserver : public ServerObserver {
 public:
  void request_started(const Route*) override {}
  void request_finished(const Route* route, unsigned status,
                        std::chrono::steady_clock::duration) override {
    const std::lock_guard lock(mutex_);
    statuses_.push_back(status);
    operations_.push_back(route != nullptr ? route->operation : "unmatched");
  }
  std::vector<unsigned> statuses() const {
    const std::lock_guard lock(mutex_);
    return statuses_;
  }
  // Each finished request's route's operation, "unmatched" for none (as a service counts).
  std::vector<std::string> operations() const {
    const std::lock_guard lock(mutex_);
    return operations_;
  }

 protected:
  mutable std::mutex mutex_;

 private:
  std::vector<unsigned> statuses_;
  std::vector<std::string> operations_;
};

}  // namespace coromesh::http::testing
