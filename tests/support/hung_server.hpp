#pragma once

// A loopback server that is up but never answers, as a process stuck in a deadlock or
// frozen by SIGSTOP behind a kernel that still accepts for it: it accepts every
// connection, reads whatever comes, and never writes. It counts the connections it
// accepted and how many are open, so a test can see how much of a caller's resources a
// hung callee holds.
//
// Threads: its own io thread; the counters may be read from any thread.

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <cstdint>
#include <list>
#include <string>
#include <thread>

namespace coromesh::testing {

class HungServer {
 public:
  HungServer() {
    namespace asio = boost::asio;
    using tcp = asio::ip::tcp;
    acceptor_.open(tcp::v4());
    acceptor_.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept_next();
    thread_ = std::thread([this] { io_.run(); });
  }
  HungServer(const HungServer&) = delete;
  HungServer& operator=(const HungServer&) = delete;
  ~HungServer() {
    boost::asio::post(io_, [this] {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      for (auto& socket : sockets_) {
        socket.close(ignored);
      }
    });
    thread_.join();
  }

  std::uint16_t port() const { return port_; }
  std::string host() const { return "127.0.0.1"; }
  int accepted() const { return accepted_.load(); }
  int open() const { return open_.load(); }

 private:
  void accept_next() {
    acceptor_.async_accept([this](boost::system::error_code ec, boost::asio::ip::tcp::socket s) {
      if (ec) {
        return;  // closed by the destructor
      }
      ++accepted_;
      ++open_;
      read_forever(sockets_.insert(sockets_.end(), std::move(s)));
      accept_next();
    });
  }
  // Reads and drops until the peer closes; never answers.
  void read_forever(std::list<boost::asio::ip::tcp::socket>::iterator socket) {
    socket->async_read_some(boost::asio::buffer(sink_),
                            [this, socket](boost::system::error_code ec, std::size_t) {
                              if (ec) {
                                --open_;
                                boost::system::error_code ignored;
                                socket->close(ignored);
                                return;  // the socket stays in the list until destruction
                              }
                              read_forever(socket);
                            });
  }

  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_{io_};
  std::uint16_t port_ = 0;
  std::list<boost::asio::ip::tcp::socket> sockets_;
  char sink_[4096];  // what the callers send, dropped (one io thread: shared is fine)
  std::atomic<int> accepted_{0}, open_{0};
  std::thread thread_;
};

}  // namespace coromesh::testing
