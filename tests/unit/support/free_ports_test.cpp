// The test fixtures' port picking (tests/support/test_env.hpp): ctest runs test
// processes in parallel, each starting servers on ports it was handed a moment before.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "test_env.hpp"

namespace coromesh::testing {
namespace {

std::filesystem::path claim_file(std::uint16_t port) {
  return std::filesystem::temp_directory_path() / "coromesh-test-ports" / std::to_string(port);
}

TEST(FreePorts, APortHandedOutIsNotHandedOutAgainWhileReserved) {
  // Without the claims, two draws of 200 from the 12,000 ports share about 3 on average
  // (their sockets are closed in between, as when a test's server has not bound yet).
  const auto first = free_ports(200);
  const auto second = free_ports(200);
  const std::set<std::uint16_t> handed_out(first.begin(), first.end());
  ASSERT_EQ(handed_out.size(), first.size());
  for (auto port : second) {
    EXPECT_EQ(handed_out.count(port), 0u) << "port " << port << " was handed out twice";
  }
}

TEST(FreePorts, AFreshClaimRefusesAndAStaleOneIsTakenOver) {
  const auto port = free_port();
  ASSERT_TRUE(std::filesystem::exists(claim_file(port)));
  EXPECT_FALSE(claim_port(port)) << "a claim made a moment ago must hold";
  std::filesystem::last_write_time(
      claim_file(port),
      std::filesystem::file_time_type::clock::now() - kPortReservation - std::chrono::seconds(1));
  EXPECT_TRUE(claim_port(port)) << "a claim older than the reservation is stale";
  EXPECT_FALSE(claim_port(port)) << "and taking it over claims it afresh";
}

}  // namespace
}  // namespace coromesh::testing
