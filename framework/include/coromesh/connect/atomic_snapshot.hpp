#pragma once

// A shared_ptr to an immutable value that one thread replaces while any thread reads
// it: what EndpointWatch publishes and LoadBalancer indexes.
//
// Why not std::atomic<std::shared_ptr>: libstdc++ 12 implements it with a lock bit in
// the control-block pointer, and its load() releases that bit with a relaxed operation,
// so a load and a following store are not ordered by the memory model (ThreadSanitizer
// reports it, rightly, as a data race; x86 happens to hide it). This is the same design
// with the orderings a lock needs: a spin flag held only while a shared_ptr is copied or
// swapped (one reference-count increment), never across anything that can block.
//
// Thread-safety: every member may be called from any thread concurrently.

#include <atomic>
#include <memory>
#include <utility>

namespace coromesh::connect {

template <class T>
class AtomicSnapshot {
 public:
  using Pointer = std::shared_ptr<const T>;

  AtomicSnapshot() noexcept = default;
  explicit AtomicSnapshot(Pointer initial) noexcept : value_(std::move(initial)) {}
  AtomicSnapshot(const AtomicSnapshot&) = delete;
  AtomicSnapshot& operator=(const AtomicSnapshot&) = delete;

  Pointer load() const noexcept {
    Guard guard(busy_);
    return value_;
  }

  // Installs `next` and returns the previous value (released by the caller, outside the
  // flag: destroying a snapshot may free a lot).
  Pointer exchange(Pointer next) noexcept {
    Guard guard(busy_);
    value_.swap(next);
    return next;
  }

  void store(Pointer next) noexcept { exchange(std::move(next)); }

 private:
  class Guard {
   public:
    explicit Guard(std::atomic<bool>& busy) noexcept : busy_(busy) {
      while (busy_.exchange(true, std::memory_order_acquire)) {
        while (busy_.load(std::memory_order_relaxed)) {
          // Held for a pointer copy: spin briefly rather than sleep.
        }
      }
    }
    ~Guard() { busy_.store(false, std::memory_order_release); }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    std::atomic<bool>& busy_;
  };

  mutable std::atomic<bool> busy_{false};
  Pointer value_;
};

}  // namespace coromesh::connect
