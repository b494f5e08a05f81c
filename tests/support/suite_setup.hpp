#pragma once

// A test suite's shared set-up (SetUpTestSuite) that fails ends the test process with a
// message. gtest would otherwise report the suite's tests as "[  SKIPPED ]", and ctest
// (gtest_discover_tests marks that output as a skip) would count a Consul that did not
// start as success. No coromesh test skips on purpose.

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <exception>

namespace coromesh::testing {

template <class SetUp>
void suite_set_up_or_exit(const char* suite, SetUp&& set_up) {
  const char* why = nullptr;
  try {
    set_up();
    if (::testing::Test::HasFatalFailure()) {
      why = "a fatal assertion (see above)";
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: the suite's set-up threw: %s\n", suite, e.what());
    why = "an exception";
  } catch (...) {
    why = "an unknown exception";
  }
  if (why != nullptr) {
    std::fprintf(stderr, "%s: the suite's set-up failed with %s; its tests cannot run\n", suite,
                 why);
    std::fflush(stderr);
    std::_Exit(1);
  }
}

}  // namespace coromesh::testing
