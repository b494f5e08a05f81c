#pragma once

// -sidecar-for, before anything starts: which connect-proxy registration on the local
// agent belongs to service instance `service_id`, as `consul connect proxy -sidecar-for`
// finds it: the one with ID `proxy_id` (Consul's `<id>-sidecar-proxy`, or --instance-id),
// else the only connect-proxy whose Proxy.DestinationServiceID is `service_id`.
//
// Blocking (runs its own io_context): call from main() only. Throws config::ConfigError
// naming what is missing or ambiguous, or why the agent could not be read.

#include <string>

#include "coromesh/config/service_config.hpp"
#include "coromesh/consul/types.hpp"

namespace coromesh::sidecar {

consul::AgentService find_proxy_registration(const config::ServiceConfig& config,
                                             const std::string& service_id,
                                             const std::string& proxy_id);

}  // namespace coromesh::sidecar
