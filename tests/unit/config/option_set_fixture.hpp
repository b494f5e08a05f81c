#pragma once

// A small option set with a setting of every type, shared by the OptionSet tests.

#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "coromesh/config/option_set.hpp"
#include "test_env.hpp"

namespace coromesh::config::testing {

using namespace std::chrono_literals;

struct Fixture {
  std::uint16_t port = 0;
  int threads = 4;
  bool verbose = false;
  std::chrono::nanoseconds timeout = 10s;
  std::uint64_t max_body = 1024 * 1024;
  std::string name = "svc";
  std::string token;
  Address upstream{"127.0.0.1", 8500};
  std::string bind = "127.0.0.1";
  std::vector<std::string> tags;
  std::string label = "http";
  OptionSet options{"svc", "A test service."};

  Fixture() {
    options.add_port(port,
                     {.flag = "port", .env = {"T_PORT"}, .help = "Port.", .nomad = Nomad::port});
    options.add_integer(threads, {.flag = "threads", .env = {"T_THREADS"}, .help = "Threads."}, 1,
                        256);
    options.add_bool(verbose, {.flag = "verbose", .env = {"T_VERBOSE"}, .help = "Chatty."});
    options.add_duration(timeout, {.flag = "timeout", .env = {"T_TIMEOUT"}, .help = "Timeout."},
                         1ms, 1h);
    options.add_size(max_body, {.flag = "max-body", .env = {"T_MAX_BODY"}, .help = "Body."}, 0,
                     1ULL << 30);
    options.add_string(name, {.flag = "name", .env = {"T_NAME"}, .help = "Name."});
    options.add_string(token, {.flag = "token",
                               .env = {"T_TOKEN", "T_TOKEN_FALLBACK"},
                               .help = "Secret.",
                               .secret = true});
    options.add_address(upstream, {.flag = "upstream", .env = {"T_UPSTREAM"}, .help = "Upstream."});
    options.add_ip_address(
        bind, {.flag = "bind", .env = {"T_BIND"}, .help = "Bind.", .nomad = Nomad::ip});
    options.add_list(tags, {.flag = "tags", .env = {"T_TAGS"}, .help = "Tags."});
    options.set_nomad_label(&label);
  }

  ParseStatus parse(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
    return options.parse(args, Environment::from(std::move(env)));
  }
  std::string error(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
    try {
      parse(std::move(args), std::move(env));
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "<no error>";
  }
};

inline std::string write_file(const coromesh::testing::TempDir& dir, const std::string& text) {
  const auto path = (dir.path() / "svc.conf").string();
  std::ofstream(path) << text;
  return path;
}

}  // namespace coromesh::config::testing
