package coromesh.bench;

import io.github.resilience4j.bulkhead.Bulkhead;
import io.github.resilience4j.bulkhead.BulkheadConfig;
import io.github.resilience4j.circuitbreaker.CircuitBreaker;
import io.github.resilience4j.circuitbreaker.CircuitBreakerConfig;
import io.github.resilience4j.core.IntervalFunction;
import io.github.resilience4j.ratelimiter.RateLimiter;
import io.github.resilience4j.ratelimiter.RateLimiterConfig;
import io.github.resilience4j.retry.Retry;
import io.github.resilience4j.retry.RetryConfig;
import io.github.resilience4j.timelimiter.TimeLimiter;
import io.github.resilience4j.timelimiter.TimeLimiterConfig;
import io.micrometer.core.instrument.Timer;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.openjdk.jmh.annotations.AuxCounters;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

/**
 * The peer of benchmarks/micro/qos_chain_benchmark.cpp: what a declared coromesh
 * operation's QoS chain costs per call, built from resilience4j 2.4.0 decorators the
 * way a JVM team would stack them, around a call that completes at once.
 *
 * <p>call() is one call through the decorators of `subject`, shared by all benchmark threads
 * (Scope.Benchmark), as coromesh's chain is shared by a service's io threads. Run with
 * -t 1 and -t 2; JMH's AverageTime is the wall time per call seen by each thread, and
 * the secondary metrics cpuNanos / cpuCalls the calling threads' CPU time per call
 * (what Google Benchmark's CPU time is on the C++ side; a loaded machine inflates the
 * wall time, not this). The JVM's GC and JIT threads are not in it.
 *
 * <p>The asynchronous (CompletionStage) decorators throughout: coromesh's chain wraps an
 * awaited call, and a time limiter that can cut a call off needs a CompletionStage.
 *
 * <p>chain = retry(circuit_breaker(rate_limit(timeout(bulkhead(metrics(call)))))),
 * coromesh's default order, each at coromesh's declared default, which are
 * resilience4j's own defaults where coromesh borrowed them. What differs:
 * <ul>
 *   <li>timeout: TimeLimiter schedules a task per call on a ScheduledThreadPoolExecutor
 *       and cancels it when the call completes (removeOnCancel on, as coromesh's
 *       deadline watchdog forgets a finished call's deadline; off, a second's worth of
 *       cancelled tasks would fill the queue). coromesh: the io_context's deadline
 *       watchdog and an inline child coroutine.
 *   <li>retry: no retry budget in resilience4j (coromesh counts each request in its
 *       budget); it retries any exception, coromesh 502/503/504 and transport errors.
 *       Neither retries here: every call succeeds.
 *   <li>rate limit: AtomicRateLimiter (permits refreshed per cycle) with no wait, where
 *       coromesh has a token bucket; both set never to refuse (10^9 permits per second).
 *   <li>metrics: a Micrometer Timer on a Prometheus registry with coromesh's bucket
 *       bounds, per result, where coromesh counts results and a duration histogram in
 *       per-thread shards.
 *   <li>no fallback, log or adaptive limit on either side (resilience4j has no adaptive
 *       limit; coromesh-adaptive-limit stands alone).
 * </ul>
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@State(Scope.Benchmark)
public class QosChainBenchmark {
  // High enough never to refuse: the cost measured is the admitting path.
  private static final int NEVER_REFUSING = 1_000_000_000;
  // coromesh's default duration buckets (HttpServerMetrics::default_duration_buckets).
  private static final double[] BUCKETS_SECONDS = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
  };

  /**
   * The calling thread's CPU time over its calls in one iteration, read every 1024 calls
   * (reading it costs a system call): JMH sums cpuNanos and cpuCalls over the threads.
   */
  @State(Scope.Thread)
  @AuxCounters(AuxCounters.Type.EVENTS)
  public static class CpuTime {
    private static final ThreadMXBean THREADS = ManagementFactory.getThreadMXBean();
    public long cpuNanos;
    public long cpuCalls;
    private long calls;
    private long started;

    @Setup(Level.Iteration)
    public void start() {
      cpuNanos = 0;
      cpuCalls = 0;
      calls = 0;
      started = THREADS.getCurrentThreadCpuTime();
    }

    long count(long result) {
      if ((++calls & 1023) == 0) {
        cpuNanos = THREADS.getCurrentThreadCpuTime() - started;
        cpuCalls = calls;
      }
      return result;
    }
  }

  private ScheduledThreadPoolExecutor scheduler;
  // What one call goes through: the chain, one policy alone, or nothing (bare).
  @Param({"bare", "chain", "timeout", "retry", "circuit_breaker", "rate_limit", "bulkhead", "metrics"})
  public String subject;

  private Supplier<CompletionStage<Long>> measured;
  private volatile long value = 41;

  @Setup
  public void build() {
    scheduler = new ScheduledThreadPoolExecutor(1);
    scheduler.setRemoveOnCancelPolicy(true);
    Supplier<CompletionStage<Long>> bare = () -> CompletableFuture.completedFuture(value + 1);
    measured =
        switch (subject) {
          case "bare" -> bare;
          case "chain" -> retry(breaker(rateLimit(timeout(bulkhead(metrics(bare))))));
          case "timeout" -> timeout(bare);
          case "retry" -> retry(bare);
          case "circuit_breaker" -> breaker(bare);
          case "rate_limit" -> rateLimit(bare);
          case "bulkhead" -> bulkhead(bare);
          case "metrics" -> metrics(bare);
          default -> throw new IllegalArgumentException("no subject " + subject);
        };
  }

  @TearDown
  public void stop() {
    scheduler.shutdownNow();
  }

  private final PrometheusMeterRegistry registry =
      new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);

  // The per-attempt timeout, 1 s, cutting the call off (coromesh: timeout{}, preemptive).
  private Supplier<CompletionStage<Long>> timeout(Supplier<CompletionStage<Long>> next) {
    TimeLimiter limiter =
        TimeLimiter.of(
            TimeLimiterConfig.custom()
                .timeoutDuration(Duration.ofSeconds(1))
                .cancelRunningFuture(true)
                .build());
    return limiter.decorateCompletionStage(scheduler, next);
  }

  // 3 attempts, 25 ms exponential backoff (x2, full jitter, at most 250 ms): retry{}.
  private Supplier<CompletionStage<Long>> retry(Supplier<CompletionStage<Long>> next) {
    Retry retry =
        Retry.of(
            "bench",
            RetryConfig.<Long>custom()
                .maxAttempts(3)
                .intervalFunction(
                    IntervalFunction.ofExponentialRandomBackoff(
                        Duration.ofMillis(25), 2.0, 1.0, Duration.ofMillis(250)))
                .build());
    return Retry.decorateCompletionStage(retry, scheduler, next);
  }

  // Count window of 100, 50 % failures, 100 % slow calls over 60 s, 100 calls at least,
  // open 60 s, 10 half-open probes: resilience4j's defaults, coromesh's circuit_breaker{}.
  private Supplier<CompletionStage<Long>> breaker(Supplier<CompletionStage<Long>> next) {
    CircuitBreaker breaker = CircuitBreaker.of("bench", CircuitBreakerConfig.ofDefaults());
    return CircuitBreaker.decorateCompletionStage(breaker, next);
  }

  private Supplier<CompletionStage<Long>> rateLimit(Supplier<CompletionStage<Long>> next) {
    RateLimiter limiter =
        RateLimiter.of(
            "bench",
            RateLimiterConfig.custom()
                .limitForPeriod(NEVER_REFUSING)
                .limitRefreshPeriod(Duration.ofSeconds(1))
                .timeoutDuration(Duration.ZERO)
                .build());
    return RateLimiter.decorateCompletionStage(limiter, next);
  }

  // 25 concurrent calls, no waiting: bulkhead{} (and resilience4j's default).
  private Supplier<CompletionStage<Long>> bulkhead(Supplier<CompletionStage<Long>> next) {
    Bulkhead bulkhead =
        Bulkhead.of(
            "bench",
            BulkheadConfig.custom().maxConcurrentCalls(25).maxWaitDuration(Duration.ZERO).build());
    return Bulkhead.decorateCompletionStage(bulkhead, next);
  }

  // Each call's result and duration (coromesh: metrics{}).
  private Supplier<CompletionStage<Long>> metrics(Supplier<CompletionStage<Long>> next) {
    Timer ok = timer("ok");
    Timer error = timer("error");
    return () -> {
      long start = System.nanoTime();
      return next.get()
          .whenComplete(
              (result, failure) ->
                  (failure == null ? ok : error)
                      .record(System.nanoTime() - start, TimeUnit.NANOSECONDS));
    };
  }

  private Timer timer(String result) {
    Duration[] bounds = new Duration[BUCKETS_SECONDS.length];
    for (int i = 0; i < bounds.length; i++) {
      bounds[i] = Duration.ofNanos((long) (BUCKETS_SECONDS[i] * 1e9));
    }
    return Timer.builder("bench_qos_calls")
        .tag("result", result)
        .serviceLevelObjectives(bounds)
        .register(registry);
  }

  @Benchmark
  public long call(CpuTime cpu) {
    return cpu.count(measured.get().toCompletableFuture().join());
  }
}
