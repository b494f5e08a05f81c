#pragma once

// Every built-in interceptor: the chain core and each policy's adapter.

#include "coromesh/qos/adaptive_limit_interceptor.hpp"
#include "coromesh/qos/bulkhead_interceptor.hpp"
#include "coromesh/qos/chain.hpp"
#include "coromesh/qos/circuit_breaker_interceptor.hpp"
#include "coromesh/qos/fallback.hpp"
#include "coromesh/qos/log_interceptor.hpp"
#include "coromesh/qos/metrics_interceptor.hpp"
#include "coromesh/qos/rate_limit_interceptor.hpp"
#include "coromesh/qos/retry_interceptor.hpp"
#include "coromesh/qos/timeout_interceptor.hpp"
