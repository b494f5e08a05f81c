#include "coromesh/runtime/io_pool.hpp"

#include "coromesh/log/logger.hpp"

namespace coromesh::runtime {

IoPool::IoPool(std::size_t threads) {
  if (threads == 0) {
    threads = std::max<std::size_t>(1, std::thread::hardware_concurrency());
  }
  contexts_.reserve(threads);
  guards_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) {
    // concurrency_hint 1: each context is run by exactly one thread, which lets Asio
    // drop the scheduler's locking.
    contexts_.push_back(std::make_unique<Context>(1));
    guards_.emplace_back(contexts_.back()->get_executor());
  }
}

IoPool::~IoPool() {
  terminate();
  join();
  destroy_abandoned_work();
}

boost::asio::any_io_executor IoPool::next_executor() {
  auto index = next_.fetch_add(1, std::memory_order_relaxed) % contexts_.size();
  return contexts_[index]->get_executor();
}

void IoPool::start() {
  for (auto& context : contexts_) {
    threads_.emplace_back([ctx = context.get()] {
      while (true) {
        try {
          ctx->run();
          return;
        } catch (const std::exception& e) {
          // A handler that throws past its coroutine is a bug; keep the thread
          // serving rather than losing a core for the rest of the process.
          log::error("runtime.handler_exception", {{"error", e.what()}});
        }
      }
    });
  }
}

void IoPool::stop() {
  for (auto& guard : guards_) {
    guard.reset();
  }
}

void IoPool::terminate() {
  stop();
  for (auto& context : contexts_) {
    context->stop();
  }
}

void IoPool::join() {
  for (auto& thread : threads_) {
    if (thread.joinable()) {
      thread.join();
    }
  }
  threads_.clear();
}

void IoPool::destroy_abandoned_work() {
  for (auto& context : contexts_) {
    context->destroy_pending();
  }
}

void IoPool::run() {
  start();
  join();
}

void LogEscapedException::operator()(const std::exception_ptr& e) const {
  if (!e) {
    return;
  }
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    log::error("runtime.task_failed", {{"task", task}, {"error", ex.what()}});
  } catch (...) {
    log::error("runtime.task_failed", {{"task", task}, {"error", "unknown exception"}});
  }
}

}  // namespace coromesh::runtime
