# Sources of the qos module (see framework/CMakeLists.txt): the hermetic QoS policies.
list(APPEND COROMESH_FRAMEWORK_SOURCES
  src/qos/clock.cpp
  src/qos/thread_shard.cpp
  src/qos/reason.cpp
  src/qos/circuit_breaker.cpp
  src/qos/rate_limiter.cpp
  src/qos/bulkhead.cpp
  src/qos/retry.cpp
  src/qos/adaptive_limit.cpp
  src/qos/deadline.cpp
  src/qos/validate.cpp
  src/qos/policy_runtime.cpp
  src/qos/fault.cpp
  src/qos/chain.cpp
  src/qos/deadline_watchdog.cpp
  src/qos/cancellable_call.cpp
  src/qos/timeout_interceptor.cpp
  src/qos/retry_interceptor.cpp
  src/qos/circuit_breaker_interceptor.cpp
  src/qos/rate_limit_interceptor.cpp
  src/qos/bulkhead_interceptor.cpp
  src/qos/adaptive_limit_interceptor.cpp
  src/qos/log_interceptor.cpp
  src/qos/metrics_interceptor.cpp)
