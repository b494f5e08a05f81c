"""benchmarks/suites/lib/qos_samples.py on outputs shaped like Google Benchmark 1.7's
and JMH 1.37's JSON (no benchmark is run)."""
import unittest

import qos_samples


def gbench(name, threads, real, cpu, **extra):
    return {"name": f"{name}/real_time/threads:{threads}", "run_type": "iteration",
            "threads": threads, "real_time": real, "cpu_time": cpu, "time_unit": "ns", **extra}


def jmh(subject, threads, score, cpu_nanos=None, cpu_calls=None):
    secondary = {}
    if cpu_calls is not None:
        secondary = {"cpuNanos": {"score": cpu_nanos}, "cpuCalls": {"score": cpu_calls}}
    return {"benchmark": "coromesh.bench.QosChainBenchmark.call", "threads": threads,
            "params": {"subject": subject},
            "primaryMetric": {"score": score, "scoreUnit": "ns/op"},
            "secondaryMetrics": secondary}


def by_key(rows):
    return {(case, subject, metric): value for case, subject, _, metric, value, _ in rows}


class GoogleBenchmarkTest(unittest.TestCase):
    def test_cpu_time_is_the_cost_and_wall_time_is_per_thread(self):
        doc = {"benchmarks": [gbench("BM_DefaultChain", 1, 300.0, 250.0),
                              gbench("BM_DefaultChain", 2, 200.0, 260.0)]}
        rows = by_key(qos_samples.gbench_rows("chain", doc, "1"))
        self.assertEqual(rows[("threads=1", "coromesh-chain", "ns_per_call")], 250.0)
        self.assertEqual(rows[("threads=2", "coromesh-chain", "ns_per_call")], 260.0)
        # Google Benchmark divides the threads' mean wall time by the calls of both.
        self.assertEqual(rows[("threads=2", "coromesh-chain", "wall_ns_per_call")], 400.0)
        self.assertEqual(rows[("threads=1", "coromesh-chain", "wall_ns_per_call")], 300.0)

    def test_subject_names_and_units(self):
        doc = {"benchmarks": [gbench("BM_Chain/circuit_breaker", 1, 0.2, 0.1, time_unit="us"),
                              gbench("BM_BareCall", 1, 12.0, 11.0)]}
        rows = by_key(qos_samples.gbench_rows("chain", doc, "2"))
        self.assertAlmostEqual(rows[("threads=1", "coromesh-circuit-breaker", "ns_per_call")], 100.0)
        self.assertIn(("threads=1", "coromesh-bare", "ns_per_call"), rows)

    def test_benchmarks_outside_the_comparison_are_left_out(self):
        doc = {"benchmarks": [gbench("BM_FullChain", 1, 1.0, 1.0),
                              gbench("BM_BareCall", 1, 1.0, 1.0),  # bench_qos: a plain call
                              gbench("BM_TokenBucket", 1, 5.0, 4.0),
                              dict(gbench("BM_TokenBucket", 1, 5.0, 4.0), run_type="aggregate")]}
        rows = list(qos_samples.gbench_rows("core", doc, "1"))
        self.assertEqual({r[1] for r in rows}, {"coromesh-core-token-bucket"})
        self.assertEqual(len(rows), 2)

    def test_a_failed_benchmark_fails(self):
        doc = {"benchmarks": [gbench("BM_Chain/bulkhead", 2, 1.0, 1.0, error_occurred=True,
                                     error_message="bulkhead_full")]}
        with self.assertRaisesRegex(SystemExit, "bulkhead_full"):
            list(qos_samples.gbench_rows("chain", doc, "1"))


class JmhTest(unittest.TestCase):
    def test_cpu_counters_are_the_cost_and_the_score_the_wall_time(self):
        doc = [jmh("circuit_breaker", 2, 900.0, cpu_nanos=6.0e8, cpu_calls=1.0e6)]
        rows = by_key(qos_samples.jmh_rows(doc, "3"))
        self.assertEqual(rows[("threads=2", "resilience4j-circuit-breaker", "ns_per_call")], 600.0)
        self.assertEqual(rows[("threads=2", "resilience4j-circuit-breaker", "wall_ns_per_call")],
                         900.0)

    def test_no_cpu_counters_fails(self):
        with self.assertRaisesRegex(SystemExit, "cpuCalls"):
            list(qos_samples.jmh_rows([jmh("chain", 1, 900.0)], "1"))
        with self.assertRaisesRegex(SystemExit, "cpuCalls"):
            list(qos_samples.jmh_rows([jmh("chain", 1, 900.0, cpu_nanos=0, cpu_calls=0)], "1"))

    def test_another_unit_fails(self):
        doc = [jmh("chain", 1, 1.0, cpu_nanos=1.0, cpu_calls=1.0)]
        doc[0]["primaryMetric"]["scoreUnit"] = "ops/s"
        with self.assertRaisesRegex(SystemExit, "ns/op"):
            list(qos_samples.jmh_rows(doc, "1"))


if __name__ == "__main__":
    unittest.main()
