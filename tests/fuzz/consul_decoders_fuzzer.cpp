// libFuzzer target for the Consul agent API's response decoders (framework/src/consul):
// whatever a broken or hostile agent answers, a decoder returns a value that keeps its
// promises or throws DecodeError, which HttpAgentClient turns into a ConsulError. Any
// other exception, a crash or undefined behaviour is a finding.
//
// The first byte picks the decoder, the rest is the body. Seeds: corpus/consul_decoders
// (the first byte of each file is its decoder). Long run: tests/fuzz/README.md.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "json_codec.hpp"

namespace {

using namespace coromesh::consul;
using namespace coromesh::consul::detail;

void check(bool condition) {
  if (!condition) {
    std::abort();  // libFuzzer reports the input that got here
  }
}

void decode(std::uint8_t which, std::string_view body) {
  switch (which % 8) {
    case 0:
      for (const auto& instance : decode_health(body)) {
        check(instance.status == HealthStatus::passing ||
              instance.status == HealthStatus::warning ||
              instance.status == HealthStatus::critical);
      }
      break;
    case 1: {
      auto service = decode_agent_service(body);
      check(!service.id.empty() && !service.name.empty());
      break;
    }
    case 2:
      for (const auto& entry : decode_kv_entries(body)) {
        check(entry.value.size() <= body.size());
      }
      decode_kv_entry(body);
      break;
    case 3:
      decode_bool(body);
      break;
    case 4: {
      auto roots = decode_ca_roots(body);
      check(!roots.roots.empty() && !roots.trust_domain.empty());
      for (const auto& root : roots.roots) {
        check(!root.id.empty() && !root.root_cert_pem.empty());
      }
      break;
    }
    case 5: {
      auto leaf = decode_leaf_certificate(body);
      check(leaf.valid_before > leaf.valid_after);
      check(!leaf.cert_pem.empty() && !leaf.private_key_pem.empty());
      break;
    }
    case 6:
      decode_authorize_result(body);
      break;
    default:
      parse_rfc3339(body);
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    decode(data[0], body);
  } catch (const DecodeError& e) {
    check(std::string_view(e.what()).size() > 0);
  }
  return 0;
}
