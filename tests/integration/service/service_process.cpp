#include "service_process.hpp"

#include <stdexcept>

namespace coromesh::testing {

HelloService::HelloService(const ConsulAgent* consul, std::vector<std::string> extra_args) {
  port_ = free_port();
  std::vector<std::string> argv{(binary_dir() / "hello-svc").string(),
                                "--port=" + std::to_string(port_)};
  if (consul != nullptr) {
    argv.push_back("--consul=" + consul->http_address());
  } else {
    argv.emplace_back("--consul-register=false");
  }
  argv = with_default_flags(std::move(argv),
                            {"--threads=2", "--consul-check-interval=200ms",
                             "--consul-resync-interval=200ms", "--shutdown-grace=5s"},
                            extra_args);
  process_ = std::make_unique<ChildProcess>(argv, dir_.path() / "hello.log");
  bool up = wait_until([&] { return !process_->running() || get("/health").status == 200; },
                       std::chrono::seconds(10));
  if (!up || !process_->running()) {
    throw std::runtime_error("hello-svc did not start:\n" + process_->log_tail());
  }
}

HelloService::~HelloService() {
  process_->stop(std::chrono::seconds(10));
}

FetchResult HelloService::get(const std::string& target) const {
  return http_fetch("127.0.0.1", port_, target);
}

}  // namespace coromesh::testing
