"""benchmarks/lib/summarize.py: medians, spreads, ratios to the baseline, and goals
checked case by case, on samples written here (no benchmark is run; one test plots,
with gnuplot from ./ops/setup.sh --benchmarks)."""
import os
import shutil
import tempfile
import unittest

import summarize

HEADER = "case\tsubject\tround\tmetric\tvalue\tunit\n"


def suite_dir(root, samples, baseline=None, goals=None):
    path = os.path.join(root, "http")
    os.makedirs(path)
    with open(os.path.join(path, "samples.tsv"), "w", encoding="utf-8") as f:
        f.write(HEADER + "".join("\t".join(map(str, row)) + "\n" for row in samples))
    if baseline:
        with open(os.path.join(path, "baseline"), "w", encoding="utf-8") as f:
            f.write(baseline + "\n")
    if goals:
        with open(os.path.join(path, "goals.tsv"), "w", encoding="utf-8") as f:
            f.write(goals)
    return path


def rows(case, subject, metric, values, unit="1/s"):
    return [(case, subject, i + 1, metric, v, unit) for i, v in enumerate(values)]


class SummarizeTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def test_median_spread_and_ratio_to_the_baseline(self):
        samples = (rows("conns=10", "nginx", "req_per_s", [100, 300, 200])
                   + rows("conns=10", "ours", "req_per_s", [250, 150, 400]))
        suite = summarize.Suite(suite_dir(self.root, samples, baseline="nginx"))
        table = "\n".join(suite.table("req_per_s"))
        self.assertIn("| conns=10 | 200 (100–300) | 250 (150–400) **1.25×** |", table)

    def test_a_ratio_goal_is_checked_in_every_case_and_missed_where_it_fails(self):
        samples = (rows("conns=1", "nginx", "req_per_s", [100]) + rows("conns=1", "ours", "req_per_s", [120])
                   + rows("conns=100", "nginx", "req_per_s", [100]) + rows("conns=100", "ours", "req_per_s", [90]))
        suite = summarize.Suite(suite_dir(self.root, samples, baseline="nginx",
                                          goals="req_per_s\tours\tratio>=\t1.0\n"))
        [(_, checked)] = suite.check_goals()
        self.assertEqual([(c, met) for c, _, met in checked], [("conns=1", True), ("conns=100", False)])

    def test_vs_and_case_fields_choose_the_reference_and_the_cases(self):
        samples = (rows("conns=5,threads=1", "consul", "req_per_s", [100])
                   + rows("conns=5,threads=1", "nginx-tls", "req_per_s", [300])
                   + rows("conns=5,threads=1", "ours", "req_per_s", [200])
                   + rows("conns=5,threads=2", "ours", "req_per_s", [1]))
        suite = summarize.Suite(suite_dir(self.root, samples, baseline="consul",
                                          goals="req_per_s ours ratio>= 1.0 vs=nginx-tls case=*,threads=1\n"
                                                "req_per_s ours ratio>= 1.5 case=*,threads=1\n"))
        (_, against_nginx), (_, against_consul) = suite.check_goals()
        self.assertEqual(against_nginx, [("conns=5,threads=1", "0.67× nginx-tls", False)])
        self.assertEqual(against_consul, [("conns=5,threads=1", "2.00× consul", True)])

    def test_an_absolute_goal_and_a_goal_without_any_figure(self):
        samples = rows("ops=4", "chain", "ns_per_call", [240, 260, 245], unit="ns")
        suite = summarize.Suite(suite_dir(self.root, samples,
                                          goals="ns_per_call chain < 250\nns_per_call other < 250\n"))
        (_, chain), (_, other) = suite.check_goals()
        self.assertEqual(chain, [("ops=4", "245", True)])
        self.assertEqual(other, [])  # reported as MISSED: no figure
        self.assertIn("| ns_per_call other < 250 | – | no figure | **MISSED** |", "\n".join(suite.markdown({})))

    def test_cases_are_ordered_by_group_then_numeric_x(self):
        samples = (rows("conns=1000,threads=1", "a", "m", [1]) + rows("conns=10,threads=2", "a", "m", [1])
                   + rows("conns=10,threads=1", "a", "m", [1]))
        suite = summarize.Suite(suite_dir(self.root, samples))
        self.assertEqual(suite.cases, ["conns=10,threads=1", "conns=1000,threads=1", "conns=10,threads=2"])

    def test_malformed_input_is_refused_with_its_place(self):
        path = suite_dir(self.root, [("conns=1", "a", 1, "m", "fast", "x")])
        with self.assertRaisesRegex(summarize.Malformed, r"samples.tsv:2: value 'fast' is not a number"):
            summarize.Suite(path)
        with open(os.path.join(path, "samples.tsv"), "w", encoding="utf-8") as f:
            f.write(HEADER + "conns=1\ta\t1\tm\t1\tx\n")
        with open(os.path.join(path, "goals.tsv"), "w", encoding="utf-8") as f:
            f.write("m a about 1\n")
        with self.assertRaisesRegex(summarize.Malformed, r"goals.tsv:1: unknown operator 'about'"):
            summarize.Suite(path)

    def test_a_figure_below_zero_is_plotted(self):
        # Latency added over direct can come out negative on a loaded machine; a y axis
        # fixed from zero made gnuplot fail the whole summary ("all points y value undefined").
        gnuplot = shutil.which("gnuplot")
        self.assertIsNotNone(gnuplot, "gnuplot not found: run ./ops/setup.sh --benchmarks")
        samples = rows("conns=5", "ours", "added_p99_ms", [-0.4, -0.2, -0.3], unit="ms")
        suite = summarize.Suite(suite_dir(self.root, samples))
        plots = os.path.join(self.root, "plots")
        made = suite.plot(plots, gnuplot)
        self.assertEqual(made, {"added_p99_ms": ["http-added_p99_ms.png"]})
        self.assertGreater(os.path.getsize(os.path.join(plots, "http-added_p99_ms.png")), 1000)


if __name__ == "__main__":
    unittest.main()
