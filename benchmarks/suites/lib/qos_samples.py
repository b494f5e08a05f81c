#!/usr/bin/env python3
"""One QoS micro-benchmark output (JSON) -> sample rows for benchmarks/suites/qos.sh.

    qos_samples.py chain|core|jmh JSON ROUND

chain: bench_qos_chain's JSON, core: bench_qos's, jmh: the resilience4j peer's.

Prints one tab-separated line per figure: case subject round metric value unit, with
case "threads=N" and two metrics, each defined the same way on both sides:
  ns_per_call       the calling threads' CPU time per call: what a call costs, which
                    contention between the threads raises and a loaded machine does
                    not (a descheduled thread uses no CPU). Google Benchmark's
                    cpu_time (the threads' CPU time over the calls of all of them);
                    JMH: the peer's cpuNanos / cpuCalls counters (thread CPU time).
  wall_ns_per_call  the wall time per call each calling thread sees. Google
                    Benchmark (->UseRealTime(), ->Threads(N)) reports the threads'
                    mean wall time over the calls of all of them, so times N; JMH's
                    AverageTime score is per thread already.
Benchmarks that are not part of the comparison (the C++ full chains without retry,
bench_qos's bare function call) stay in the raw output only. Fails when a benchmark reported an
error or the file holds none of the benchmarks expected.
"""
import json
import sys

# Google Benchmark name (before "/real_time") -> subject; BM_Chain/<kind> is
# coromesh-<kind>.
GBENCH_SUBJECTS = {
    "chain": {"BM_BareCall": "coromesh-bare", "BM_DefaultChain": "coromesh-chain"},
    # bench_qos: the policy objects alone, outside a chain.
    "core": {
        "BM_CircuitBreaker": "coromesh-core-circuit-breaker",
        "BM_TokenBucket": "coromesh-core-token-bucket",
        "BM_AdaptiveLimit": "coromesh-core-adaptive-limit",
        "BM_BreakerBucketLimit": "coromesh-core-breaker-bucket-limit",
    },
}
TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def gbench_rows(kind, doc, round_):
    for b in doc.get("benchmarks", []):
        if b.get("run_type", "iteration") != "iteration":
            continue
        if b.get("error_occurred"):
            sys.exit(f"qos_samples: {b['name']} failed: {b.get('error_message')}")
        base = b["name"].split("/real_time")[0]
        if kind == "chain" and base.startswith("BM_Chain/"):
            subject = "coromesh-" + base.split("/", 1)[1].replace("_", "-")
        elif base in GBENCH_SUBJECTS[kind]:
            subject = GBENCH_SUBJECTS[kind][base]
        else:
            continue
        threads = int(b["threads"])
        unit = TO_NS[b["time_unit"]]
        case = f"threads={threads}"
        yield case, subject, round_, "ns_per_call", b["cpu_time"] * unit, "ns"
        yield case, subject, round_, "wall_ns_per_call", b["real_time"] * unit * threads, "ns"


def jmh_rows(doc, round_):
    for b in doc:
        subject = "resilience4j-" + b.get("params", {}).get("subject", "?").replace("_", "-")
        metric = b["primaryMetric"]
        if metric["scoreUnit"] != "ns/op":
            sys.exit(f"qos_samples: {subject}: unit {metric['scoreUnit']}, expected ns/op")
        case = f"threads={b['threads']}"
        cpu = b.get("secondaryMetrics", {})
        calls = cpu.get("cpuCalls", {}).get("score", 0)
        if not calls:
            sys.exit(f"qos_samples: {subject}: no cpuCalls counted (fewer than 1024 calls?)")
        yield case, subject, round_, "ns_per_call", cpu["cpuNanos"]["score"] / calls, "ns"
        yield case, subject, round_, "wall_ns_per_call", metric["score"], "ns"


def main():
    kind, path, round_ = sys.argv[1:4]
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if kind not in ("chain", "core", "jmh"):
        sys.exit(f"qos_samples: kind {kind!r}: expected chain, core or jmh")
    rows = list(jmh_rows(doc, round_) if kind == "jmh" else gbench_rows(kind, doc, round_))
    if not rows:
        sys.exit(f"qos_samples: no benchmark results in {path}")
    for row in rows:
        print("\t".join(str(x) if not isinstance(x, float) else f"{x:.2f}" for x in row))


if __name__ == "__main__":
    main()
