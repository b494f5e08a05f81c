#include "coromesh/config/environment.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <stdexcept>

namespace coromesh::config {
namespace {

TEST(Environment, MapEnvironmentReturnsOnlyWhatItHolds) {
  auto env = Environment::from({{"A", "1"}, {"EMPTY", ""}});
  EXPECT_EQ(env.get("A"), "1");
  EXPECT_EQ(env.get("EMPTY"), "") << "set-but-empty is not unset";
  EXPECT_EQ(env.get("B"), std::nullopt);
}

TEST(Environment, ProcessEnvironmentReadsGetenv) {
  ASSERT_EQ(::setenv("COROMESH_ENVIRONMENT_TEST", "yes", 1), 0);
  auto env = Environment::process();
  EXPECT_EQ(env.get("COROMESH_ENVIRONMENT_TEST"), "yes");
  ::unsetenv("COROMESH_ENVIRONMENT_TEST");
  EXPECT_EQ(env.get("COROMESH_ENVIRONMENT_TEST"), std::nullopt);
  EXPECT_EQ(env.get(""), std::nullopt);
  EXPECT_EQ(env.get("A=B"), std::nullopt);
  EXPECT_EQ(env.get(std::string("PATH\0X", 6)), std::nullopt);
}

TEST(Environment, RejectsAnEmptyLookup) {
  EXPECT_THROW(Environment(Environment::Lookup{}), std::invalid_argument);
}

}  // namespace
}  // namespace coromesh::config
