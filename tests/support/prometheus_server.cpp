#include "prometheus_server.hpp"

#include <boost/json.hpp>
#include <cctype>
#include <fstream>
#include <stdexcept>

namespace coromesh::testing {

std::string url_encode(const std::string& value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char raw : value) {
    auto c = static_cast<unsigned char>(raw);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

namespace {

void replace_all(std::string& text, const std::string& from, const std::string& to) {
  for (auto pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos)) {
    text.replace(pos, from.size(), to);
    pos += to.size();
  }
}

std::string render_config(const PrometheusOptions& options, std::uint16_t own_port) {
  std::string self_job =
      "  - job_name: prometheus\n"
      "    static_configs:\n"
      "      - targets: ['127.0.0.1:" +
      std::to_string(own_port) + "']\n";
  if (options.consul_address.empty()) {
    return "global:\n"
           "  scrape_interval: 1s\n"
           "  evaluation_interval: 1s\n"
           "scrape_configs:\n" +
           self_job + options.extra_scrape_configs;
  }
  auto template_path = source_dir() / "ops/prometheus/prometheus.yml.in";
  std::ifstream in(template_path);
  if (!in) {
    throw std::runtime_error("cannot read " + template_path.string());
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  replace_all(text, "__CONSUL_ADDR__", options.consul_address);
  replace_all(text, "__SCRAPE_INTERVAL__", "1s");
  replace_all(text, "__RULES_DIR__", (source_dir() / "ops/prometheus/rules").string());
  if (!options.consul_token_file.empty()) {
    const std::string server = "      - server: " + options.consul_address + "\n";
    replace_all(text, server,
                server +
                    "        authorization:\n          type: Bearer\n"
                    "          credentials_file: " +
                    options.consul_token_file + "\n");
  }
  if (text.back() != '\n') {
    text += '\n';
  }
  return text + self_job + options.extra_scrape_configs;
}

}  // namespace

PrometheusServer::PrometheusServer(const PrometheusOptions& options) {
  auto binary = prometheus_binary();
  port_ = free_port();
  auto config = dir_.path() / "prometheus.yml";
  {
    std::ofstream out(config);
    out << render_config(options, port_);
  }
  process_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{binary.string(), "--config.file=" + config.string(),
                               "--storage.tsdb.path=" + (dir_.path() / "data").string(),
                               "--web.listen-address=127.0.0.1:" + std::to_string(port_),
                               "--log.level=warn"},
      dir_.path() / "prometheus.log");
  bool ready = wait_until(
      [&] {
        if (!process_->running()) {
          return true;
        }
        return http_fetch("127.0.0.1", port_, "/-/ready").status == 200;
      },
      std::chrono::seconds(30), std::chrono::milliseconds(100));
  if (!process_->running() || !ready) {
    std::string why = process_->running() ? "not ready within 30s" : "it exited";
    std::string tail = process_->log_tail();
    process_.reset();
    throw std::runtime_error("Prometheus (" + binary.string() + ") did not start: " + why +
                             "\n--- prometheus log ---\n" + tail);
  }
}

PrometheusServer::~PrometheusServer() {
  if (process_) {
    process_->stop(std::chrono::seconds(10));
  }
}

FetchResult PrometheusServer::query(const std::string& promql) const {
  return http_fetch("127.0.0.1", port_, "/api/v1/query?query=" + url_encode(promql));
}

std::optional<PrometheusServer::Sample> PrometheusServer::wait_for_sample(
    const std::string& promql, std::chrono::milliseconds timeout,
    const std::function<bool(const Sample&)>& accept) const {
  std::optional<Sample> found;
  wait_until(
      [&] {
        auto res = query(promql);
        if (res.status != 200) {
          return false;
        }
        auto doc = boost::json::parse(res.body);
        const auto& result = doc.at("data").at("result").as_array();
        if (result.empty()) {
          return false;
        }
        Sample sample;
        for (const auto& [name, value] : result[0].at("metric").as_object()) {
          sample.labels[std::string(name)] = std::string(value.as_string());
        }
        sample.value = std::string(result[0].at("value").as_array()[1].as_string());
        if (accept && !accept(sample)) {
          return false;
        }
        found = std::move(sample);
        return true;
      },
      timeout, std::chrono::milliseconds(250));
  return found;
}

}  // namespace coromesh::testing
