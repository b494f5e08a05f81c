#pragma once

// Owns one service instance's registration with the local agent for the life of the
// process:
//   run()      registers (retrying with backoff while the agent is unreachable), then
//              checks that the agent still has it and registers again when it does not
//              (an agent restart loses dev-mode and non-persisted registrations) —
//              logged as consul.reregistered. The check is a blocking query on its own
//              registration, answered at least every resync_interval: an answer that
//              the agent holds it is the check (nothing else is sent), the agent going
//              away (the query fails) or losing the registration (it answers "none")
//              starts a resync at once, and a query unanswered for twice the interval
//              starts one too. An agent that cannot block is asked every
//              resync_interval instead; while the agent is unreachable it is probed at
//              outage_probe_initial, doubling up to outage_probe_max, so that a
//              restarted agent has the registration back within about outage_probe_max
//              of answering, not at the next resync tick. An agent that answers but
//              refuses a check (403: a revoked token; 400) is not an outage: asked again
//              at the next tick;
//   update()   replaces what is registered (say, the Meta after a live QoS override):
//              run() registers the new registration at once, and again at each resync
//              until the agent has accepted it. While the agent refuses it (a 4xx but
//              429: the definition or the credentials are the caller's fault, logged
//              once per streak as consul.update.rejected and counted `rejected` by the
//              agent client), the last definition it accepted stays registered: each
//              resync checks that the agent still holds one and registers that one
//              again if not, so a refused update never takes the instance out of the
//              catalog (an agent restart or a deregistration meanwhile included);
//   shutdown() phase 1 of a graceful shutdown: stops run(), puts the instance in
//              maintenance (critical at once, so it leaves every ?passing answer while
//              in-flight requests drain), then deregisters. Never throws.
//
// Ownership: `consul` must outlive the Registrar. Threading: the AgentClient's executor;
// call run() and shutdown() from coroutines on it. Typical use:
//
//   consul::Registrar registrar(agent, registration);
//   co_spawn(ex, registrar.run(), on_error);   // runs until shutdown()
//   ...
//   co_await registrar.shutdown();              // then drain, then exit

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>

#include "coromesh/consul/agent_client.hpp"

namespace coromesh::consul {

struct RegistrarOptions {
  std::chrono::milliseconds resync_interval = std::chrono::seconds(5);
  std::chrono::milliseconds retry_initial = std::chrono::milliseconds(100);
  std::chrono::milliseconds retry_max = std::chrono::seconds(5);
  // The probes of an agent that stopped answering after the registration (see run()).
  std::chrono::milliseconds outage_probe_initial = std::chrono::milliseconds(100);
  std::chrono::milliseconds outage_probe_max = std::chrono::seconds(1);
  // Limit for each shutdown step (maintenance, deregistration): a dead agent must not
  // hold up the process' exit.
  std::chrono::milliseconds shutdown_step_timeout = std::chrono::seconds(2);
  std::string maintenance_reason = "shutting down";
};

class Registrar {
 public:
  Registrar(AgentClient& consul, ServiceRegistration registration, RegistrarOptions options = {});
  // Destroy only after run() has returned (shutdown() awaited, or run() cancelled).
  ~Registrar();
  Registrar(const Registrar&) = delete;
  Registrar& operator=(const Registrar&) = delete;

  // Returns after shutdown() (or when cancelled). Throws ConsulError if the agent rejects
  // the registration itself (a 4xx but 429, ConsulError::caller_fault()): a configuration
  // error, which retrying cannot fix. A 429 (the agent too busy) is retried like a 5xx.
  boost::asio::awaitable<void> run();

  // Replaces the registration (its ID must not change; throws std::invalid_argument if
  // it does) and wakes run() to send it. Call on the executor run() runs on.
  void update(ServiceRegistration registration);

  // Stops run() and waits for it, then maintenance + deregistration, each bounded by
  // shutdown_step_timeout; failures are logged. Idempotent; fine without run().
  boost::asio::awaitable<void> shutdown();

  // The ID the agent knows the instance by (registration.id, or its name when empty).
  const std::string& service_id() const noexcept { return service_id_; }
  // The agent accepted the last registration and it was not deregistered since.
  bool registered() const noexcept { return registered_; }
  // Successful registrations: 1 after start-up, +1 for each re-registration.
  std::uint64_t registrations() const noexcept { return registrations_; }

 private:
  boost::asio::awaitable<void> keep();
  boost::asio::awaitable<bool> register_with_retry();
  boost::asio::awaitable<void> resync();
  // Registers accepted_ again when the agent no longer holds the instance.
  boost::asio::awaitable<void> keep_last_accepted();
  enum class Watched : std::uint8_t {
    held,          // the agent answered that it holds the registration (changed or not)
    gone,          // the agent answered that it does not hold it
    query_failed,  // the query failed: the agent may be gone, or refuses the query
  };
  // One blocking query on the registration, from the last answer's hash: returns when
  // the registration changes or the wait (resync_interval) ends, or the query fails.
  boost::asio::awaitable<Watched> watch_registration();
  boost::asio::awaitable<void> bounded_step(std::string step_name,
                                            boost::asio::awaitable<void> step);

  AgentClient& consul_;
  ServiceRegistration registration_;  // the latest definition, from update()
  // The last definition the agent accepted: what the instance is registered as while the
  // agent refuses registration_.
  ServiceRegistration accepted_;
  RegistrarOptions options_;
  std::string service_id_;
  // Made by run(), on the executor it runs on.
  std::optional<boost::asio::steady_timer> stop_;  // cancelled by shutdown(): run() waits on it
  std::optional<boost::asio::steady_timer> done_;  // cancelled as run() returns: shutdown() waits
  std::optional<boost::asio::steady_timer> wake_;  // run()'s resync sleep; update() cuts it short
  std::uint64_t generation_ = 0;                   // +1 for each update()
  std::uint64_t sent_generation_ = 0;              // the generation the agent last accepted
  std::uint64_t sent_credentials_ = 0;             // consul_.credentials_generation() at that time
  std::string watched_hash_;  // the last answer's hash; empty: the next query answers at once
  bool agent_blocks_ = true;  // false once the agent answered a blocking query without a hash
  bool running_ = false;
  bool started_ = false;
  bool stopping_ = false;
  bool registered_ = false;
  std::uint64_t registrations_ = 0;
  unsigned resync_failures_ = 0;  // resyncs in a row the agent did not answer (an outage)
  unsigned resync_refusals_ = 0;  // resyncs in a row it refused (ConsulError::caller_fault())
  std::exception_ptr fatal_;
};

}  // namespace coromesh::consul
