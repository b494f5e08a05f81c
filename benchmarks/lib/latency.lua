-- wrk script of the benchmarks/run.sh suites: wrk --latency prints no p99.9, so at the
-- end this prints one line that benchmarks/lib/samples.sh (wrk_samples) reads:
--   latency_summary <requests> <errors> <seconds> <p50 us> <p99 us> <p99.9 us> <non-2xx>
-- errors = socket errors + non-2xx/3xx answers; the last field counts the latter alone
-- (a declared rate limit's 429s are answers, not failures of the harness).
done = function(summary, latency, _)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout + e.status
  io.write(string.format("latency_summary %d %d %.3f %d %d %d %d\n", summary.requests, errors,
    summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), e.status))
end
