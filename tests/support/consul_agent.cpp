#include "consul_agent.hpp"

#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string_view>

namespace coromesh::testing {

namespace {

// A random UUID (version 4 layout) for the management token: no two agents share one.
std::string random_uuid() {
  std::random_device device;
  std::mt19937_64 bits(device());
  std::ostringstream out;
  out << std::hex;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) {
      out << '-';
    }
    out << (i == 12 ? 4U : static_cast<unsigned>(bits() % 16));
  }
  return out.str();
}

}  // namespace

ConsulAgent::ConsulAgent(ConsulAgentOptions options) : options_(options) {
  if (options_.acl) {
    management_token_ = random_uuid();
    write_acl_config();
  }
  if (!options_.extra_config.empty()) {
    write_extra_config();
  }
  // A port found free can be taken by another test (or an outgoing connection) before the
  // agent binds it: that start is retried on new ports; any other failure is reported.
  constexpr int kAttempts = 4;
  for (int attempt = 1;; ++attempt) {
    auto ports = free_ports(7);
    ports_.http = ports[0];
    ports_.dns = ports[1];
    ports_.serf_lan = ports[2];
    ports_.serf_wan = ports[3];
    ports_.server = ports[4];
    ports_.grpc = ports[5];
    ports_.grpc_tls = ports[6];
    try {
      start();
      return;
    } catch (const std::runtime_error& e) {
      if (attempt == kAttempts ||
          std::string_view(e.what()).find("address already in use") == std::string_view::npos) {
        throw;
      }
    }
  }
}

ConsulAgent::~ConsulAgent() {
  stop();
}

void ConsulAgent::write_acl_config() const {
  // Consul 1.15 syntax (tokens.initial_management replaced tokens.master in 1.11).
  std::ofstream out(dir_.path() / "acl.hcl");
  out << "acl {\n"
         "  enabled = true\n"
         "  default_policy = \"deny\"\n"
         "  enable_token_persistence = true\n"
         "  tokens {\n"
         "    initial_management = \""
      << management_token_ << "\"\n    agent = \"" << management_token_
      << "\"\n"
         "  }\n"
         "}\n";
  if (!out.flush()) {
    throw std::runtime_error("cannot write " + (dir_.path() / "acl.hcl").string());
  }
}

void ConsulAgent::write_extra_config() const {
  std::ofstream out(dir_.path() / "extra.hcl");
  out << options_.extra_config << '\n';
  if (!out.flush()) {
    throw std::runtime_error("cannot write " + (dir_.path() / "extra.hcl").string());
  }
}

void ConsulAgent::start() {
  auto binary = consul_binary();
  auto log = dir_.path() / ("consul-" + std::to_string(generation_++) + ".log");
  auto port = [](std::uint16_t p) { return std::to_string(p); };
  std::vector<std::string> argv{binary.string(),
                                "agent",
                                "-dev",
                                "-node=coromesh-test",
                                "-bind=127.0.0.1",
                                "-client=127.0.0.1",
                                "-advertise=127.0.0.1",
                                "-http-port=" + port(ports_.http),
                                "-dns-port=" + port(ports_.dns),
                                "-serf-lan-port=" + port(ports_.serf_lan),
                                "-serf-wan-port=" + port(ports_.serf_wan),
                                "-server-port=" + port(ports_.server),
                                "-grpc-port=" + port(ports_.grpc),
                                "-grpc-tls-port=" + port(ports_.grpc_tls),
                                "-log-level=warn"};
  if (options_.acl) {
    argv.push_back("-config-file=" + (dir_.path() / "acl.hcl").string());
  }
  if (!options_.extra_config.empty()) {
    argv.push_back("-config-file=" + (dir_.path() / "extra.hcl").string());
  }
  process_ = std::make_unique<ChildProcess>(argv, log);

  bool has_leader = wait_until(
      [&] {
        if (!process_->running()) {
          return true;  // reported below
        }
        auto res = api("GET", "/v1/status/leader");
        return res.status == 200 && res.body.size() > 2;  // `""` means no leader yet
      },
      std::chrono::seconds(30), std::chrono::milliseconds(100));
  // A dev agent elects itself before its Connect CA has a root: tests that read the
  // roots (or a leaf) at once would see an empty list. Ready means both.
  bool has_ca_root =
      has_leader && process_->running() &&
      wait_until(
          [&] {
            if (!process_->running()) {
              return true;  // reported below
            }
            auto res = api("GET", "/v1/agent/connect/ca/roots");
            return res.status == 200 && res.body.find("\"RootCert\"") != std::string::npos;
          },
          std::chrono::seconds(30), std::chrono::milliseconds(50));
  if (!process_->running() || !has_leader || !has_ca_root) {
    std::string why = !process_->running() ? "the agent exited"
                      : !has_leader        ? "no leader within 30s"
                                           : "no Connect CA root within 30s";
    std::string tail = process_->log_tail();
    process_.reset();
    throw std::runtime_error("Consul agent (" + binary.string() + ") did not start: " + why +
                             "\n--- consul log ---\n" + tail);
  }
}

std::string ConsulAgent::log_text() const {
  std::string text;
  for (int g = 0; g < generation_; ++g) {
    text += read_file(dir_.path() / ("consul-" + std::to_string(g) + ".log"));
  }
  return text;
}

namespace {

// Whether every thread of `pid` is stopped (state T in /proc/<pid>/task/*/stat).
bool all_threads_stopped(pid_t pid) {
  std::error_code error;
  const std::filesystem::path tasks = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& task : std::filesystem::directory_iterator(tasks, error)) {
    std::ifstream stat(task.path() / "stat");
    std::string line;
    std::getline(stat, line);
    // "<tid> (<comm>) <state> ...": the name may hold spaces and parentheses.
    const auto close = line.rfind(')');
    if (close == std::string::npos || close + 2 >= line.size() || line[close + 2] != 'T') {
      return false;
    }
  }
  return !error;
}

}  // namespace

void ConsulAgent::freeze() {
  if (!process_) {
    return;
  }
  process_->signal(SIGSTOP);
  // kill() returns before every thread has stopped: a thread running on another core
  // could still answer a request sent right after freeze() returned.
  if (!wait_until([&] { return all_threads_stopped(process_->pid()); }, std::chrono::seconds(5),
                  std::chrono::milliseconds(1))) {
    throw std::runtime_error("consul agent: not every thread stopped within 5 s of SIGSTOP");
  }
}

void ConsulAgent::thaw() {
  if (process_) {
    process_->signal(SIGCONT);
  }
}

void ConsulAgent::stop() {
  if (process_) {
    process_->signal(SIGCONT);  // a frozen agent would not see the SIGTERM
    process_->stop(std::chrono::seconds(10));
    process_.reset();
  }
}

void ConsulAgent::restart() {
  stop();
  start();
}

FetchResult ConsulAgent::api(const std::string& method, const std::string& path,
                             const std::string& body, const std::string* token) const {
  FetchOptions options;
  options.method = method;
  options.body = body;
  const std::string& as = token != nullptr ? *token : management_token_;
  if (!as.empty()) {
    options.headers["X-Consul-Token"] = as;
  }
  options.timeout = std::chrono::seconds(10);
  return http_fetch("127.0.0.1", ports_.http, path, options);
}

}  // namespace coromesh::testing
