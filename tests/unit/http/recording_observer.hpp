#pragma once

// A ServerObserver for tests: records the status of every finished request, as a
// service's requests_total would count it.

#include <chrono>
#include <mutex>
#include <vector>

#include "coromesh/http/server.hpp"

namespace coromesh::http::testing {

class RecordingObserver : public ServerObserver {
 public:
  void request_started(const Route*) override {}
  void request_finished(const Route*, unsigned status,
                        std::chrono::steady_clock::duration) override {
    const std::lock_guard lock(mutex_);
    statuses_.push_back(status);
  }
  std::vector<unsigned> statuses() const {
    const std::lock_guard lock(mutex_);
    return statuses_;
  }

 protected:
  mutable std::mutex mutex_;

 private:
  std::vector<unsigned> statuses_;
};

}  // namespace coromesh::http::testing
