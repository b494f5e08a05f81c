#include "coromesh/http/trace_context.hpp"

#include <cstdint>
#include <random>

namespace coromesh::http {

namespace {

bool is_hex_id(std::string_view text) {
  return text.find_first_not_of("0123456789abcdef") == std::string_view::npos &&
         text.find_first_not_of('0') != std::string_view::npos;
}

}  // namespace

std::optional<std::string_view> trace_id_of(std::string_view traceparent) noexcept {
  if (traceparent.size() != 55 || traceparent[2] != '-' || traceparent[35] != '-' ||
      traceparent[52] != '-') {
    return std::nullopt;
  }
  const auto trace = traceparent.substr(3, 32);
  if (!is_hex_id(trace)) {
    return std::nullopt;
  }
  return trace;
}

namespace {

// SplitMix64 over a per-thread counter seeded from std::random_device: a bijection of
// the counter, so a thread never repeats an id within 2^64 of them, and threads start
// at unrelated points. Several times cheaper than std::mt19937_64, which the server paid
// on every request without a traceparent (about 1% of hello-svc's CPU under load).
// Trace ids must not collide; nothing relies on their being unpredictable.
std::uint64_t next_random() noexcept {
  thread_local std::uint64_t state =
      (std::uint64_t{std::random_device{}()} << 32) ^ std::uint64_t{std::random_device{}()};
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30U)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27U)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31U);
}

}  // namespace

void assign_random_hex_id(std::string& id, std::size_t length) {
  static constexpr char kHex[] = "0123456789abcdef";
  id.resize(length);
  do {
    for (std::size_t i = 0; i < length; i += 16) {
      auto bits = next_random();
      for (std::size_t j = 0; j < 16 && i + j < length; ++j) {
        id[i + j] = kHex[(bits >> (j * 4)) & 0xFU];
      }
    }
  } while (id.find_first_not_of('0') == std::string::npos);
}

std::string make_traceparent(std::string_view trace_id) {
  std::string trace(trace_id);
  if (trace.size() != 32 || !is_hex_id(trace)) {
    assign_random_hex_id(trace, 32);
  }
  std::string span;
  assign_random_hex_id(span, 16);
  return "00-" + trace + "-" + span + "-01";
}

}  // namespace coromesh::http
