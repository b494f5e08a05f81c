#pragma once

// A loopback address whose SYNs vanish, as a black-holed host's do, without root or
// firewall rules: a listener with a backlog of 0 that never accepts, its accept queue
// filled by one connection of our own. Linux then drops every further SYN to it (no
// RST, no SYN-ACK), so a connect to it hangs until the caller gives up.
//
// The constructor checks that the kernel behaves so (a probe connect must still be
// pending after 200 ms) and throws otherwise: a test built on it cannot pass for the
// wrong reason.
//
// Threads: the constructor blocks (up to ~200 ms); use before the test's io_context runs.

#include <poll.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cerrno>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace coromesh::testing {

class BlackHole {
 public:
  BlackHole() {
    namespace asio = boost::asio;
    using tcp = asio::ip::tcp;
    acceptor_.open(tcp::v4());
    acceptor_.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    acceptor_.listen(0);
    filler_.connect(acceptor_.local_endpoint());  // the queue's one place, never accepted
    // A non-blocking probe (raw: asio's connect() would wait for the outcome): it must
    // still be pending after 200 ms, when Linux answers a loopback SYN in microseconds.
    tcp::socket probe(io_, tcp::v4());
    probe.non_blocking(true);
    const auto target = acceptor_.local_endpoint();
    if (::connect(probe.native_handle(), target.data(), static_cast<socklen_t>(target.size())) ==
            0 ||
        errno != EINPROGRESS) {
      throw std::runtime_error(
          "BlackHole: a connect to the full accept queue ended at once: this kernel does not "
          "drop such SYNs");
    }
    // Writable means the connect ended (accepted or refused); still pending means dropped.
    ::pollfd wait{.fd = probe.native_handle(), .events = POLLOUT, .revents = 0};
    if (::poll(&wait, 1, 200) != 0) {
      throw std::runtime_error(
          "BlackHole: a connect to the full accept queue ended within 200 ms: this kernel "
          "does not drop such SYNs");
    }
  }

  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::string host() const { return "127.0.0.1"; }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_{io_};
  boost::asio::ip::tcp::socket filler_{io_};
};

}  // namespace coromesh::testing
