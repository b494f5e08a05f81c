#include "coromesh/log/async_line_writer.hpp"

#include <unistd.h>

#include <cerrno>
#include <utility>

#include "coromesh/log/logger.hpp"

namespace coromesh::log {

AsyncLineWriter::AsyncLineWriter(int fd, AsyncLineWriterOptions options)
    : fd_(fd), options_(options), thread_([this] { run(); }) {}

AsyncLineWriter::~AsyncLineWriter() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_writer_.notify_one();
  thread_.join();
}

bool AsyncLineWriter::submit(std::string_view line) {
  {
    std::lock_guard lock(mutex_);
    if (pending_.size() + line.size() + 1 <= options_.capacity_bytes) {
      pending_.append(line);
      pending_ += '\n';
      queued_bytes_ += line.size() + 1;
      return true;
    }
  }
  dropped_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

bool AsyncLineWriter::flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  const auto target = queued_bytes_;
  flush_requested_ = true;
  wake_writer_.notify_one();
  return written_.wait_for(lock, timeout, [&] { return written_bytes_ >= target; });
}

std::uint64_t AsyncLineWriter::dropped() const noexcept {
  return dropped_.load(std::memory_order_relaxed);
}

void AsyncLineWriter::run() {
  std::string batch;  // swapped with pending_, so both buffers keep their capacity
  for (;;) {
    bool stop = false;
    {
      std::unique_lock lock(mutex_);
      wake_writer_.wait_for(lock, options_.interval, [&] { return stopping_ || flush_requested_; });
      flush_requested_ = false;
      batch.swap(pending_);
      stop = stopping_;
    }
    const std::size_t queued = batch.size();
    // A drop is news the operator needs: say so once per batch, after what did fit.
    const auto dropped = dropped_.load(std::memory_order_relaxed);
    if (dropped != dropped_reported_) {
      batch += format_line(Level::warn, "log.lines_dropped",
                           {{"reason", "queue_full"}, {"lines", dropped - dropped_reported_}});
      batch += '\n';
      dropped_reported_ = dropped;
    }
    write_all(batch);
    batch.clear();
    {
      std::lock_guard lock(mutex_);
      written_bytes_ += queued;
    }
    written_.notify_all();
    if (stop) {
      std::lock_guard lock(mutex_);
      if (pending_.empty()) {
        return;
      }
    }
  }
}

void AsyncLineWriter::write_all(std::string_view bytes) const {
  while (!bytes.empty()) {
    auto n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return;  // a broken log sink has nowhere better to be reported
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace coromesh::log
