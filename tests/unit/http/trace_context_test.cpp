#include "coromesh/http/trace_context.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

namespace coromesh::http {
namespace {

const std::string kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";

TEST(TraceContext, ReadsTheTraceIdOfAValidTraceparent) {
  EXPECT_EQ(trace_id_of("00-" + kTrace + "-00f067aa0ba902b7-01"), kTrace);
}

TEST(TraceContext, RefusesMalformedTraceparents) {
  const std::string bad_values[] = {
      std::string(),
      "00-" + kTrace,
      "00-" + kTrace + "-00f067aa0ba902b7-0",
      "00_" + kTrace + "-00f067aa0ba902b7-01",
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
      "00-" + std::string(32, '0') + "-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
  };
  for (const auto& bad : bad_values) {
    EXPECT_FALSE(trace_id_of(bad)) << bad;
  }
}

TEST(TraceContext, RandomIdsAreHexOfTheLengthAskedAndDiffer) {
  std::string a = "reused buffer";
  std::string b;
  assign_random_hex_id(a, 32);
  assign_random_hex_id(b, 32);
  EXPECT_EQ(a.size(), 32U);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(a, b);
  assign_random_hex_id(b, 16);
  EXPECT_EQ(b.size(), 16U);
}

// The generator is a per-thread counter under a mixing function: every id of a thread
// differs (a generator stuck on one state, or one that repeated, would fail here), and
// threads start at unrelated points.
TEST(TraceContext, RandomIdsDoNotRepeatWithinOrAcrossThreads) {
  std::set<std::string> seen;
  auto draw = [](std::vector<std::string>& into) {
    std::string id;
    for (int i = 0; i < 20'000; ++i) {
      assign_random_hex_id(id, 16);
      into.push_back(id);
    }
  };
  std::vector<std::string> here;
  std::vector<std::string> there;
  draw(here);
  std::thread other([&] { draw(there); });
  other.join();
  seen.insert(here.begin(), here.end());
  seen.insert(there.begin(), there.end());
  EXPECT_EQ(seen.size(), here.size() + there.size());
}

TEST(TraceContext, MakeTraceparentContinuesAValidTraceAndStartsOtherwise) {
  const auto continued = make_traceparent(kTrace);
  EXPECT_EQ(trace_id_of(continued), kTrace);
  EXPECT_EQ(continued.substr(52), "-01");
  for (const std::string_view start : {std::string_view(), std::string_view("not-a-trace")}) {
    const auto fresh = make_traceparent(start);
    ASSERT_TRUE(trace_id_of(fresh)) << fresh;
    EXPECT_NE(*trace_id_of(fresh), kTrace);
  }
}

}  // namespace
}  // namespace coromesh::http
