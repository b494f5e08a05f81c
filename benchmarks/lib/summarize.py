#!/usr/bin/env python3
"""Summary and plots of one benchmarks/run.sh results directory.

    summarize.py RESULTS_DIR        (benchmarks/results/<date>, one subdirectory per suite)

Reads every RESULTS_DIR/<suite>/samples.tsv (case, subject, round, metric, value,
unit; see benchmarks/README.md), its `baseline` and `goals.tsv`, and RESULTS_DIR/
machine.txt when run.sh wrote one. Writes RESULTS_DIR/summary.md: per suite and metric
a table of the median over rounds and the min-max spread of each subject in each case,
the ratio of each median to the baseline's in the same case, then every goal, case by
case, met or MISSED. Writes one PNG per suite, metric and series group with gnuplot
(RESULTS_DIR/plots/<suite>-<metric>[-<group>].png: the median against the case's x,
min-max as error bars, one line per subject).

A case is "<x-name>=<x>" or "<x-name>=<x>,<k>=<v>...": the pairs after the first split
the series into groups (conns=100,threads=2 -> group threads=2).
A goal line is: METRIC SUBJECT OP VALUE [vs=SUBJECT] [case=GLOB], tab or space
separated; OP is >=, <=, >, < (on the median) or ratio>=, ratio<=, ratio>, ratio< (on
the median over the median of the reference subject, the baseline unless vs= names
another). A goal holds when it holds in every case (matching GLOB) where SUBJECT has
the metric; a goal with no figure at all is MISSED.
Exit status: 0 when the summary and plots were written (goals missed included), 1 when
there is nothing to summarize, a file is malformed or gnuplot fails.
"""
import fnmatch
import math
import operator
import os
import shutil
import statistics
import subprocess
import sys
from collections import OrderedDict

COMPARE = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


# Distinct line colours for up to 12 subjects (gnuplot's default cycle repeats after 8).
COLORS = ["#9400d3", "#009e73", "#56b4e9", "#e69f00", "#e51e10", "#0072b2", "#000000",
          "#a0522d", "#808080", "#ff69b4", "#2e8b57", "#c8b400"]


class Malformed(Exception):
    pass


def parse_case(case):
    """'conns=100,threads=2' -> ('conns', 100.0 or None, 'threads=2')."""
    first, _, rest = case.partition(",")
    name, eq, x = first.partition("=")
    if not eq:
        return case, None, rest
    try:
        return name, float(x), rest
    except ValueError:
        return name, None, rest


def read_samples(path):
    """{(case, subject, metric): [values]} in file order, and {metric: unit}."""
    samples, units = OrderedDict(), {}
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["case", "subject", "round", "metric", "value", "unit"]:
            raise Malformed(f"{path}: header is {header}")
        for number, line in enumerate(f, start=2):
            if not line.strip():
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) != 6:
                raise Malformed(f"{path}:{number}: {len(cols)} columns, 6 expected: {line!r}")
            case, subject, _, metric, value, unit = cols
            try:
                number_value = float(value)
            except ValueError as error:
                raise Malformed(f"{path}:{number}: value {value!r} is not a number") from error
            samples.setdefault((case, subject, metric), []).append(number_value)
            units[metric] = unit
    return samples, units


def read_goals(path):
    goals = []
    if not os.path.exists(path):
        return goals
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            cols = line.split()
            if not cols or cols[0].startswith("#"):
                continue
            if len(cols) < 4:
                raise Malformed(f"{path}:{number}: METRIC SUBJECT OP VALUE expected: {line!r}")
            goal = {"metric": cols[0], "subject": cols[1], "op": cols[2], "vs": None,
                    "case": "*", "text": " ".join(cols)}
            ratio = goal["op"].startswith("ratio")
            if goal["op"].removeprefix("ratio") not in COMPARE:
                raise Malformed(f"{path}:{number}: unknown operator {goal['op']!r}")
            try:
                goal["value"] = float(cols[3])
            except ValueError as error:
                raise Malformed(f"{path}:{number}: {cols[3]!r} is not a number") from error
            for extra in cols[4:]:
                key, eq, val = extra.partition("=")
                if not eq or key not in ("vs", "case"):
                    raise Malformed(f"{path}:{number}: unknown field {extra!r} (vs=, case=)")
                goal[key] = val
            goal["ratio"] = ratio
            goals.append(goal)
    return goals


def read_text(path):
    """The file's text without surrounding blanks; '' when there is no such file."""
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def fmt(value):
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


class Suite:
    def __init__(self, directory):
        self.name = os.path.basename(directory.rstrip("/"))
        self.dir = directory
        self.samples, self.units = read_samples(os.path.join(directory, "samples.tsv"))
        self.baseline = read_text(os.path.join(directory, "baseline")) or None
        self.goals = read_goals(os.path.join(directory, "goals.tsv"))
        self.subjects = list(OrderedDict.fromkeys(s for _, s, _ in self.samples))
        if self.baseline in self.subjects:  # the baseline first in every table
            self.subjects.remove(self.baseline)
            self.subjects.insert(0, self.baseline)
        self.metrics = list(OrderedDict.fromkeys(m for _, _, m in self.samples))
        cases = list(OrderedDict.fromkeys(c for c, _, _ in self.samples))
        order = {c: i for i, c in enumerate(cases)}
        # Grouped by the pairs after x, then by x (numeric when it is), else file order.
        self.cases = sorted(cases, key=lambda c: (parse_case(c)[2],
                                                  parse_case(c)[1] if parse_case(c)[1] is not None else math.inf,
                                                  order[c]))

    def median(self, case, subject, metric):
        values = self.samples.get((case, subject, metric))
        return statistics.median(values) if values else None

    def groups(self):
        return list(OrderedDict.fromkeys(parse_case(c)[2] for c in self.cases))

    def table(self, metric):
        """Markdown table: a row per case, a column per subject."""
        subjects = [s for s in self.subjects if any((c, s, metric) in self.samples for c in self.cases)]
        lines = ["| case | " + " | ".join(subjects) + " |", "| --- |" + " ---: |" * len(subjects)]
        for case in self.cases:
            if not any((case, s, metric) in self.samples for s in subjects):
                continue
            base = self.median(case, self.baseline, metric) if self.baseline else None
            cells = []
            for subject in subjects:
                values = self.samples.get((case, subject, metric))
                if not values:
                    cells.append("–")
                    continue
                med = statistics.median(values)
                cell = fmt(med)
                if len(values) > 1:
                    cell += f" ({fmt(min(values))}–{fmt(max(values))})"
                if base and subject != self.baseline:
                    cell += f" **{med / base:.2f}×**"
                cells.append(cell)
            lines.append(f"| {case} | " + " | ".join(cells) + " |")
        return lines

    def check_goals(self):
        """[(goal, [(case, figure, met)])]: a figure per case the goal covers."""
        results = []
        for goal in self.goals:
            reference = goal["vs"] or self.baseline
            rows = []
            for case in self.cases:
                if not fnmatch.fnmatch(case, goal["case"]):
                    continue
                med = self.median(case, goal["subject"], goal["metric"])
                if med is None:
                    continue
                compare = COMPARE[goal["op"].removeprefix("ratio")]
                if goal["ratio"]:
                    ref = self.median(case, reference, goal["metric"]) if reference else None
                    if not ref:
                        rows.append((case, f"no {reference or 'baseline'} figure", False))
                        continue
                    figure = med / ref
                    rows.append((case, f"{figure:.2f}× {reference}", compare(figure, goal["value"])))
                else:
                    rows.append((case, fmt(med), compare(med, goal["value"])))
            results.append((goal, rows))
        return results

    def markdown(self, plots):
        out = [f"## {self.name}", ""]
        rounds = max((len(v) for v in self.samples.values()), default=0)
        out.append(f"Median over {rounds} round(s), (min–max), **ratio to the baseline's median**"
                   f" (baseline: {self.baseline or 'none'}).")
        for metric in self.metrics:
            out += ["", f"### {metric} ({self.units.get(metric, '')})", ""]
            out += self.table(metric)
            for png in plots.get(metric, []):
                out += ["", f"![{self.name} {metric}](plots/{png})"]
        checked = self.check_goals()
        if checked:
            out += ["", f"### goals of {self.name}", "", "| goal | case | figure | |", "| --- | --- | --- | --- |"]
            for goal, rows in checked:
                if not rows:
                    out.append(f"| {goal['text']} | – | no figure | **MISSED** |")
                for case, figure, met in rows:
                    out.append(f"| {goal['text']} | {case} | {figure} | {'met' if met else '**MISSED**'} |")
        return out

    def plot(self, plots_dir, gnuplot):
        """Writes the PNGs; returns {metric: [file names]}."""
        made = {}
        data_dir = os.path.join(plots_dir, "data")
        os.makedirs(data_dir, exist_ok=True)
        for metric in self.metrics:
            for group in self.groups():
                cases = [c for c in self.cases if parse_case(c)[2] == group]
                x_name = parse_case(cases[0])[0]
                numeric = all(parse_case(c)[1] is not None for c in cases)
                series = []
                for subject in self.subjects:
                    points = []
                    for index, case in enumerate(cases):
                        values = self.samples.get((case, subject, metric))
                        if values:
                            x = parse_case(case)[1] if numeric else index
                            points.append((x, statistics.median(values), min(values), max(values), case))
                    if points:
                        series.append((subject, points))
                if not series:
                    continue
                stem = f"{self.name}-{metric}" + (f"-{group.replace(',', '-')}" if group else "")
                for subject, points in series:
                    with open(os.path.join(data_dir, f"{stem}.{subject}.dat"), "w", encoding="utf-8") as f:
                        for x, med, low, high, case in points:
                            f.write(f"{x} {med} {low} {high} \"{case.split(',')[0]}\"\n")
                xs = [p[0] for _, pts in series for p in pts]
                logx = numeric and min(xs) > 0 and max(xs) / min(xs) >= 100
                script = [
                    "set terminal pngcairo size 900,540 noenhanced font ',10'",
                    f"set output '{os.path.join(plots_dir, stem + '.png')}'",
                    f"set title '{self.name}: {metric} ({self.units.get(metric, '')})"
                    f"{' ' + group if group else ''}, median and min-max over rounds'",
                    f"set xlabel '{x_name}'",
                    f"set ylabel '{metric} ({self.units.get(metric, '')})'",
                    "set key outside right top", "set grid",
                ]
                # From zero, unless a figure can be negative (added latency over direct, on a
                # loaded machine): gnuplot refuses a plot whose every point is out of range.
                if min(p[2] for _, pts in series for p in pts) >= 0:
                    script.append("set yrange [0:*]")
                script += [f"set linetype {i + 1} lc rgb '{c}' lw 2 pt {i + 1}" for i, c in enumerate(COLORS)]
                script.append("set offsets graph 0.05, graph 0.05, 0, 0")
                if logx:
                    script.append("set logscale x 10")
                if not numeric:
                    script.append("set xtics (" + ", ".join(
                        f"'{c.split(',')[0]}' {i}" for i, c in enumerate(cases)) + ")")
                commands = []
                for subject, _ in series:
                    dat = os.path.join(data_dir, f"{stem}.{subject}.dat")
                    commands.append(f"'{dat}' using 1:2:3:4 with yerrorlines lw 2 title '{subject}'")
                script.append("plot " + ", ".join(commands))
                run = subprocess.run([gnuplot], input="\n".join(script) + "\n", text=True,
                                     capture_output=True, check=False)
                if run.returncode != 0:
                    raise RuntimeError(f"gnuplot failed for {stem}: {run.stderr.strip()}")
                made.setdefault(metric, []).append(stem + ".png")
        return made


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    results = sys.argv[1]
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print("summarize.py: gnuplot not found: run ./ops/setup.sh --benchmarks (Debian gnuplot-nox)",
              file=sys.stderr)
        return 1
    suite_dirs = sorted(d for d in (os.path.join(results, n) for n in os.listdir(results))
                        if os.path.isfile(os.path.join(d, "samples.tsv")))
    if not suite_dirs:
        print(f"summarize.py: no <suite>/samples.tsv under {results}", file=sys.stderr)
        return 1
    plots_dir = os.path.join(results, "plots")
    try:
        suites = [Suite(d) for d in suite_dirs]
        out = [f"# Benchmark results {os.path.basename(os.path.abspath(results))}", ""]
        machine = read_text(os.path.join(results, "machine.txt"))
        if machine:
            out += ["```", machine, "```", ""]
        missed = []
        for suite in suites:
            for goal, rows in suite.check_goals():
                bad = [case for case, _, met in rows if not met]
                if bad or not rows:
                    missed.append(f"{suite.name}: `{goal['text']}` missed at "
                                  + (", ".join(bad) if bad else "every case (no figure)"))
        goal_count = sum(len(s.goals) for s in suites)
        out.append(f"Goals: {goal_count - len(missed)} of {goal_count} met.")
        out += [f"- MISSED {m}" for m in missed]
        for suite in suites:
            plots = suite.plot(plots_dir, gnuplot)
            out += [""] + suite.markdown(plots)
    except (Malformed, RuntimeError, OSError) as error:
        print(f"summarize.py: {error}", file=sys.stderr)
        return 1
    with open(os.path.join(results, "summary.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    print(f"summary: {os.path.join(results, 'summary.md')}; "
          f"{goal_count - len(missed)} of {goal_count} goals met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
