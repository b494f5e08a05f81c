#pragma once

// A pool of io_contexts, one thread each (the "io_context per core" model): a
// connection lives on one context for its whole life, so its coroutine never needs a
// strand and never migrates between threads.
//
// Lifetime: construct, hand out executors, run() (blocks until stop() and all threads
// have joined) or start()/join(). stop() may be called from any thread, including a
// signal handler coroutine running on the pool.
//
// Abandoned work: after terminate() a coroutine can still be suspended on a context (a
// request cut off by the shutdown, a frame waiting in a bulkhead queue). Its frame, and
// everything it points at, is destroyed only when the context is shut down. The owner of
// the pool must call destroy_abandoned_work() after join() and BEFORE destroying anything
// those frames reference (handlers, QoS policies, clients, metrics); the destructor does
// it too, but by then a pool declared before those objects has outlived them.

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <cstddef>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace coromesh::runtime {

class IoPool {
 public:
  // `threads` == 0 means one per hardware core.
  explicit IoPool(std::size_t threads = 0);
  ~IoPool();
  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;

  std::size_t size() const noexcept { return contexts_.size(); }
  boost::asio::io_context& context(std::size_t index) { return *contexts_.at(index); }
  // Round-robin over the contexts; thread-safe.
  boost::asio::any_io_executor next_executor();
  boost::asio::any_io_executor executor(std::size_t index) {
    return contexts_.at(index)->get_executor();
  }

  // Starts one thread per context and returns.
  void start();
  // Lets the contexts run out of work and stop; returns at once.
  void stop();
  // Stops every context now, abandoning pending work (the last step of a shutdown,
  // once nothing that matters is left running).
  void terminate();
  // Waits for every thread to finish.
  void join();
  // After join(): destroys every handler and suspended coroutine frame still queued on
  // the contexts, running their destructors now (see "Abandoned work" above). The
  // contexts stay valid for the destruction of the I/O objects bound to them, but run no
  // more work. Idempotent.
  void destroy_abandoned_work();
  // start() + join() on the calling thread's behalf.
  void run();

 private:
  using WorkGuard = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;
  // An io_context whose shutdown (protected in Asio: the destructor's first step) can be
  // run early, so abandoned frames die while what they reference still exists.
  class Context final : public boost::asio::io_context {
   public:
    using boost::asio::io_context::io_context;
    void destroy_pending() { shutdown(); }
  };
  std::vector<std::unique_ptr<Context>> contexts_;
  std::vector<WorkGuard> guards_;
  std::vector<std::thread> threads_;
  std::atomic<std::size_t> next_{0};
};

// The completion handler for co_spawn that every coromesh coroutine uses: an escaped
// exception is logged with the task's name instead of being lost or terminating the
// process.
struct LogEscapedException {
  std::string task;
  void operator()(const std::exception_ptr& e) const;
};

// co_spawn(executor, awaitable, LogEscapedException{name}) in one call.
template <class Executor>
void spawn(Executor executor, boost::asio::awaitable<void> task, std::string name) {
  boost::asio::co_spawn(std::move(executor), std::move(task), LogEscapedException{std::move(name)});
}

}  // namespace coromesh::runtime
