#pragma once

// The logger's sink: log lines go into a bounded in-memory queue and one background
// thread writes them to a file descriptor in batches. Whoever logs (an io thread, say,
// rejecting a call to shed load) never makes a system call or waits for the sink: a
// full queue drops the line and counts it instead.
//
// Ownership: the writer owns its thread, not the file descriptor (which must stay open
// until the writer is destroyed). The process-wide instance behind log::write() writes
// to stderr; tests build their own on a pipe.
//
// Threads: submit(), flush() and the counters may be called from any thread,
// concurrently. submit() holds a mutex for the length of a memcpy; the writer thread
// holds it only to swap buffers.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace coromesh::log {

struct AsyncLineWriterOptions {
  // Bytes of lines waiting to be written; a line that does not fit is dropped. 4 MiB
  // absorbs seconds of a flood of rejections while the sink is slow.
  std::size_t capacity_bytes = 4 * 1024 * 1024;
  // How often the writer thread wakes up to write what has queued. Callers never wake
  // it (that would be a system call on their thread), so this is the lines' latency.
  std::chrono::milliseconds interval{20};
};

class AsyncLineWriter {
 public:
  explicit AsyncLineWriter(int fd, AsyncLineWriterOptions options = {});
  // Writes everything queued, then stops the thread: blocks for as long as the sink
  // does.
  ~AsyncLineWriter();
  AsyncLineWriter(const AsyncLineWriter&) = delete;
  AsyncLineWriter& operator=(const AsyncLineWriter&) = delete;

  // Queues `line` (without its newline). Returns false, and counts the line as dropped,
  // when the queue has no room for it.
  bool submit(std::string_view line);

  // Waits until every line submitted before the call has been written, or `timeout`
  // has passed (a sink nobody reads must not hang the process at exit). Returns whether
  // everything was written.
  bool flush(std::chrono::milliseconds timeout);

  // Lines dropped because the queue was full, since construction.
  std::uint64_t dropped() const noexcept;

 private:
  void run();
  void write_all(std::string_view bytes) const;

  const int fd_;
  const AsyncLineWriterOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable wake_writer_;  // flush or stop requested
  std::condition_variable written_;      // a batch reached the sink
  std::string pending_;                  // lines waiting, newline-terminated
  std::uint64_t queued_bytes_ = 0;       // total ever queued
  std::uint64_t written_bytes_ = 0;      // total ever written (or given up on)
  std::atomic<std::uint64_t> dropped_{0};
  std::uint64_t dropped_reported_ = 0;  // the writer thread's own
  bool flush_requested_ = false;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once everything above is ready
};

}  // namespace coromesh::log
