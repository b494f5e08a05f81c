#!/usr/bin/env python3
"""The figures of sidecar_pairs.sh --export DIR as benchmarks/run.sh samples.

    pairs_to_samples.py EXPORT_DIR >> samples.tsv

Per round and concurrency (case conns=N), per path (subject; the nginx stream pair is
called nginx-tls): req_per_s, p50_ms, p99_ms, p999_ms (wrk's latency_summary line),
and for the proxied paths cpu_s_per_100k (both proxies' CPU time per 100,000
requests), rss_mib (both proxies, under load), added_p50_ms and added_p99_ms (over
direct in the same round), and conn_per_s (new connections per second, "Connection:
close" through the pair; for direct, new connections to the backend).
"""
import csv
import os
import sys

SUBJECT = {"nginx": "nginx-tls"}


def rows(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def p999_ms(export, round_, conns, path):
    raw = os.path.join(export, f"wrk-{round_}-{conns}-{path}.txt")
    with open(raw, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("latency_summary "):
                return float(line.split()[6]) / 1000
    raise SystemExit(f"pairs_to_samples.py: no latency_summary in {raw}")


def main():
    export = sys.argv[1]
    out = csv.writer(sys.stdout, delimiter="\t", lineterminator="\n")
    measured = rows(os.path.join(export, "rounds.tsv"))
    direct = {(r["round"], r["connections"]): r for r in measured if r["path"] == "direct"}
    for r in measured:
        round_, conns, path = r["round"], r["connections"], r["path"]
        case, subject = f"conns={conns}", SUBJECT.get(path, path)

        def put(metric, value, unit):
            out.writerow([case, subject, round_, metric, f"{value:.4f}".rstrip("0").rstrip("."), unit])

        put("req_per_s", float(r["rps"]), "1/s")
        put("p50_ms", float(r["p50_ms"]), "ms")
        put("p99_ms", float(r["p99_ms"]), "ms")
        put("p999_ms", p999_ms(export, round_, conns, path), "ms")
        if path == "direct":
            continue
        requests = int(r["requests"])
        if requests:
            put("cpu_s_per_100k", float(r["cpu_s"]) / requests * 100000, "s")
        rss = [int(v) for v in r["rss_load_kib"].split(",") if v.strip().isdigit()]
        if rss:
            put("rss_mib", sum(rss) / 1024, "MiB")
        base = direct.get((round_, conns))
        if base:
            put("added_p50_ms", float(r["p50_ms"]) - float(base["p50_ms"]), "ms")
            put("added_p99_ms", float(r["p99_ms"]) - float(base["p99_ms"]), "ms")
    for r in rows(os.path.join(export, "newconn.tsv")):
        out.writerow([f"conns={r['connections']}", SUBJECT.get(r["path"], r["path"]), r["round"],
                      "conn_per_s", r["conn_per_s"], "1/s"])


if __name__ == "__main__":
    main()
