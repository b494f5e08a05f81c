#include "calculator_processes.hpp"

#include <boost/json.hpp>
#include <stdexcept>

namespace calculator::testing {

using coromesh::testing::binary_dir;
using coromesh::testing::ChildProcess;
using coromesh::testing::http_fetch;
using coromesh::testing::with_default_flags;

ServiceProcess::ServiceProcess(const std::string& binary, const std::filesystem::path& log_dir,
                               std::vector<std::string> extra_args)
    : binary_(binary), port_(coromesh::testing::free_port()) {
  std::vector<std::string> defaults{"--consul-register=false", "--shutdown-grace=5s"};
  if (binary != "mod-svc") {  // Python's asyncio: one thread, no --threads flag
    defaults.emplace_back("--threads=2");
  }
  const std::vector<std::string> argv = with_default_flags(
      {(binary_dir() / binary).string(), "--port=" + std::to_string(port_)}, defaults, extra_args);
  process_ = std::make_unique<ChildProcess>(
      argv, log_dir / (binary + "-" + std::to_string(port_) + ".log"));
  const bool up = coromesh::testing::wait_until(
      [&] { return !process_->running() || get("/health").status == 200; },
      std::chrono::seconds(10));
  if (!up || !process_->running()) {
    throw std::runtime_error(binary + " did not start:\n" + process_->log_tail());
  }
}

ServiceProcess::~ServiceProcess() {
  process_->stop(std::chrono::seconds(10));
}

FetchResult ServiceProcess::get(const std::string& target) const {
  return http_fetch("127.0.0.1", port_, target);
}

FetchResult ServiceProcess::post(const std::string& target, const std::string& body) const {
  return http_fetch("127.0.0.1", port_, target, {.method = "POST", .body = body});
}

OperatorInstances::OperatorInstances(const std::filesystem::path& log_dir) {
  for (const char* op : kOperations) {
    for (int i = 0; i < 2; ++i) {
      instances_[op].push_back(std::make_unique<ServiceProcess>(std::string(op) + "-svc", log_dir));
    }
  }
}

ServiceProcess& OperatorInstances::instance(const std::string& op, std::size_t index) {
  return *instances_.at(op).at(index);
}

std::string OperatorInstances::upstreams(
    const std::map<std::string, std::string>& overrides) const {
  std::string list;
  for (const char* op : kOperations) {
    const auto found = overrides.find(op);
    const std::string address =
        found != overrides.end() ? found->second : instances_.at(op).front()->address();
    list += (list.empty() ? "" : ",") + std::string(op) + "=" + address;
  }
  return list;
}

FetchResult compute(const ServiceProcess& frontend, const std::string& expression) {
  const boost::json::object body{{"expression", expression}};
  return frontend.post("/api/v1/compute", boost::json::serialize(body));
}

}  // namespace calculator::testing
