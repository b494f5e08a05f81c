#!/usr/bin/env python3
"""Summary table of benchmarks/load/sidecar_pairs.sh: medians over rounds, the
ratios to Consul's and nginx's pairs, and the goals of issue 9 beside the figures.

    summarize_pairs.py ROUNDS_TSV IDLE_TSV HELD_TSV UNAVAILABLE_TSV HOLD_TARGET

RSS lists are comma-separated, one value per proxy process (outbound, inbound);
the nginx pair is one process holding both listeners (master + worker summed).
"""
import csv
import statistics
import sys

PATH_ORDER = ["direct", "consul", "nginx", "coromesh-tcp", "coromesh-http"]
PROXY_NAMES = {"consul": "out,in", "nginx": "both", "coromesh-tcp": "out,in",
               "coromesh-http": "out,in"}
IDLE_GOAL_KIB = 16 * 1024
HELD_GOAL_KIB = 64 * 1024


def read_tsv(path, header=True):
    with open(path, encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    return rows[1:] if header else rows


def rss_values(text):
    return [int(v) for v in text.split(",") if v.strip().isdigit()]


def spread(values, fmt):
    """median (min..max), or just the value for one round."""
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}..{fmt.format(max(values))})"


def median_rss(recs):
    """Per proxy process, the median over rounds of its RSS under load."""
    columns = zip(*(r["rss"] for r in recs if r["rss"]))
    return ",".join(str(int(statistics.median(c))) for c in columns)


def verdict(ok):
    return "PASS" if ok else "FALL SHORT"


def main():
    rounds_tsv, idle_tsv, held_tsv, unavail_tsv, hold_target = sys.argv[1:6]
    rows = read_tsv(rounds_tsv)
    idle = {r[0]: r[1] for r in read_tsv(idle_tsv, header=False) if r}
    held = {r[0]: (int(r[1]), r[2]) for r in read_tsv(held_tsv) if r}
    unavailable = {r[0]: r[1] for r in read_tsv(unavail_tsv, header=False) if r}

    # data[conns][path] = list of per-round dicts; by_round[(conns, round)][path] = dict
    data, by_round = {}, {}
    for r in rows:
        rnd, conns, path = r[0], int(r[1]), r[2]
        rec = {"rps": float(r[3]), "p50": float(r[4]), "p99": float(r[5]),
               "cpu": float(r[6]), "rss": rss_values(r[7]), "requests": int(r[8]),
               "errors": int(r[9])}
        data.setdefault(conns, {}).setdefault(path, []).append(rec)
        by_round.setdefault((conns, rnd), {})[path] = rec
    paths = [p for p in PATH_ORDER if any(p in d for d in data.values())]

    for conns in sorted(data, reverse=True):
        print(f"\n== {conns} connections (median over rounds, min..max)")
        print(f"{'path':<14} {'requests/s':>26} {'p50 ms':>8} {'p99 ms':>8} {'proxy cpu s':>12}"
              f" {'cpu us/req':>10} {'RSS idle KiB':>14} {'RSS load KiB':>14} {'errors':>7}")
        for path in paths:
            recs = data[conns].get(path, [])
            if not recs:
                continue
            cpu_per_req = [r["cpu"] * 1e6 / r["requests"] for r in recs if r["requests"]]
            proxied = path != "direct"
            load_rss = [max(r["rss"]) for r in recs if r["rss"]]
            cpu_text = f"{statistics.median(r['cpu'] for r in recs):.2f}" if proxied else "-"
            print(f"{path:<14} {spread([r['rps'] for r in recs], '{:.0f}'):>26}"
                  f" {statistics.median(r['p50'] for r in recs):>8.3f}"
                  f" {statistics.median(r['p99'] for r in recs):>8.3f}"
                  f" {cpu_text:>12}"
                  f" {(f'{statistics.median(cpu_per_req):.1f}' if proxied and cpu_per_req else '-'):>10}"
                  f" {idle.get(path) or '-':>14}"
                  f" {(median_rss(recs) if proxied and load_rss else '-'):>14}"
                  f" {sum(r['errors'] for r in recs):>7}")
        for name, why in sorted(unavailable.items()):
            print(f"{name:<14} coromesh pair: {why}")

        print(f"\nratios at {conns} connections (per round, then median (min..max))")
        print(f"{'path':<14} {'req/s vs consul':>24} {'req/s vs nginx':>24}"
              f" {'p99 vs consul':>24} {'p99 vs nginx':>24}")
        for path in paths:
            rr = {("rps", "consul"): [], ("rps", "nginx"): [], ("p99", "consul"): [],
                  ("p99", "nginx"): []}
            for (c, _), recs in by_round.items():
                if c != conns or path not in recs:
                    continue
                for (key, peer), values in rr.items():
                    if peer in recs and recs[peer][key] > 0:
                        values.append(recs[path][key] / recs[peer][key])
            cols = [spread(rr[(k, p)], "{:.2f}") for k, p in
                    (("rps", "consul"), ("rps", "nginx"), ("p99", "consul"), ("p99", "nginx"))]
            print(f"{path:<14} {cols[0]:>24} {cols[1]:>24} {cols[2]:>24} {cols[3]:>24}")

    print(f"\n== RSS per proxy process holding {hold_target} keep-alive connections through the pair")
    for path in paths:
        if path in held:
            count, rss = held[path]
            print(f"{path:<14} held {count:>5}  RSS KiB ({PROXY_NAMES.get(path, '')}): {rss}")

    print("\n== goals of issue 9 for our tcp pair (coromesh-tcp)")
    if "coromesh-tcp" not in paths:
        print("coromesh pair:", unavailable.get("coromesh-tcp", "NOT MEASURED"))
        return
    for conns in sorted(data, reverse=True):
        def ratios(key, peer):
            out = []
            for (c, _), recs in by_round.items():
                if c == conns and "coromesh-tcp" in recs and peer in recs and recs[peer][key] > 0:
                    out.append(recs["coromesh-tcp"][key] / recs[peer][key])
            return out
        for label, key, peer, goal, better in (
                ("req/s >= 1.5x consul's", "rps", "consul", 1.5, "high"),
                ("req/s >= 1.0x nginx's ", "rps", "nginx", 1.0, "high"),
                ("p99 <= 0.5x consul's  ", "p99", "consul", 0.5, "low")):
            values = ratios(key, peer)
            if not values:
                print(f"@{conns:<3} {label}: no {peer} figure")
                continue
            med = statistics.median(values)
            ok = med >= goal if better == "high" else med <= goal
            print(f"@{conns:<3} {label}: {spread(values, '{:.2f}')}  {verdict(ok)}")
    idle_rss = rss_values(idle.get("coromesh-tcp", ""))
    if idle_rss:
        print(f"RSS idle < 16 MiB per proxy: {max(idle_rss)} KiB max of "
              f"{idle['coromesh-tcp']}  {verdict(max(idle_rss) < IDLE_GOAL_KIB)}")
    if "coromesh-tcp" in held:
        count, rss = held["coromesh-tcp"]
        values = rss_values(rss)
        enough = count >= int(hold_target)
        ok = enough and values and max(values) < HELD_GOAL_KIB
        print(f"RSS with {count} held connections < 64 MiB per proxy: {max(values) if values else '-'}"
              f" KiB max of {rss}  {verdict(ok)}"
              + ("" if enough else f" (only {count} of {hold_target} connections held)"))


if __name__ == "__main__":
    main()
