#pragma once

// The connect integration tests' set-up: the consul fixture (a real dev agent, Connect
// on) plus certificate sources that run until the test ends.

#include <boost/asio/bind_cancellation_slot.hpp>
#include <list>

#include "consul_test_fixture.hpp"
#include "coromesh/connect/certificate_source.hpp"
#include "tls_loopback_pair.hpp"

namespace coromesh::connect {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using coromesh::testing::connect_pair;
using namespace std::chrono_literals;

class ConnectIntegration : public consul::ConsulIntegration {
 protected:
  using consul::ConsulIntegration::ConsulIntegration;

  // Stops every source the way a shutdown does (terminal cancellation) and checks that
  // each run() returned, before the sources are destroyed.
  ~ConnectIntegration() override {
    for (auto& stop : stops_) {
      stop.emit(asio::cancellation_type::terminal);
    }
    auto deadline = std::chrono::steady_clock::now() + 5s;
    ioc_.restart();
    while (runs_finished_ < sources_.size() && std::chrono::steady_clock::now() < deadline) {
      ioc_.run_for(10ms);
    }
    EXPECT_EQ(runs_finished_, sources_.size()) << "a CertificateSource::run() did not end";
  }

  // A certificate source for `service`, running until the fixture ends.
  CertificateSource& source(const std::string& service) {
    auto& source = sources_.emplace_back(ioc_.get_executor(), agent_, service,
                                         CertificateSourceOptions{.watch = {.wait = 5s}});
    auto& stop = stops_.emplace_back();
    asio::co_spawn(ioc_, source.run(),
                   asio::bind_cancellation_slot(stop.slot(), [this](std::exception_ptr e) {
                     EXPECT_FALSE(e) << "run() ended with an exception";
                     ++runs_finished_;
                   }));
    return source;
  }

  std::list<CertificateSource> sources_;
  std::list<asio::cancellation_signal> stops_;
  std::size_t runs_finished_ = 0;
};

}  // namespace coromesh::connect
