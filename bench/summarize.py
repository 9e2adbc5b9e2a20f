#!/usr/bin/env python3
"""Summarises bench/compare.sh results: median, min-max, and sniway's ratio to the best peer.

Input: results.jsonl, one {"case", "round", "result"} object per line. Output: a Markdown table.
Peers are every target but sniway and direct. For "lower is better" figures the best peer is the
lowest; the ratio is sniway / best peer, so below 1 is better there and above 1 is better for
rates and throughput.
"""
import json
import statistics
import sys
from collections import defaultdict

# (case, label, path into result, higher_is_better)
FIGURES = [
    ("rate-classic", "conn/s, c=50, 517 B hello", ["per_second"], True),
    ("rate-classic", "proxy CPU µs/conn, 517 B", ["proxy_cpu_us_per_conn"], False),
    ("rate-classic", "conn p99 µs, c=50, 517 B", ["latency_us", "p99"], False),
    ("rate-pq", "conn/s, c=50, 1800 B hello", ["per_second"], True),
    ("rate-pq", "proxy CPU µs/conn, 1800 B", ["proxy_cpu_us_per_conn"], False),
    ("latency-classic", "connect p50 µs, c=1, 517 B", ["latency_us", "p50"], False),
    ("latency-classic", "connect p99 µs, c=1, 517 B", ["latency_us", "p99"], False),
    ("latency-pq", "connect p50 µs, c=1, 1800 B", ["latency_us", "p50"], False),
    ("latency-pq", "connect p99 µs, c=1, 1800 B", ["latency_us", "p99"], False),
    ("bulk-up-1", "Gbit/s up, 1 stream", ["gbit_per_s"], True),
    ("bulk-up-1", "proxy CPU µs/GB up, 1 stream", ["proxy_cpu_us_per_gb"], False),
    ("bulk-up-8", "Gbit/s up, 8 streams", ["gbit_per_s"], True),
    ("bulk-up-8", "proxy CPU µs/GB up, 8 streams", ["proxy_cpu_us_per_gb"], False),
    ("bulk-down-1", "Gbit/s down, 1 stream", ["gbit_per_s"], True),
    ("bulk-down-1", "proxy CPU µs/GB down, 1 stream", ["proxy_cpu_us_per_gb"], False),
    ("bulk-down-8", "Gbit/s down, 8 streams", ["gbit_per_s"], True),
    ("bulk-down-8", "proxy CPU µs/GB down, 8 streams", ["proxy_cpu_us_per_gb"], False),
    ("pingpong", "ping-pong p50 µs, 64 B", ["latency_us", "p50"], False),
    ("pingpong", "ping-pong p99 µs, 64 B", ["latency_us", "p99"], False),
    ("pingpong", "proxy CPU µs/round trip", ["proxy_cpu_us_per_round_trip"], False),
    ("tls-handshake", "TLS 1.3 full handshakes/s, c=8 (terminate)", ["per_second"], True),
    ("tls-handshake", "proxy CPU µs/handshake (terminate)", ["proxy_cpu_us_per_handshake"], False),
    ("tls-handshake", "handshake+echo p99 µs (terminate)", ["latency_us", "p99"], False),
    ("idle", "RSS KiB/idle conn", ["rss_kib_per_conn"], False),
    ("idle", "PSS KiB/idle conn", ["pss_kib_per_conn"], False),
    ("idle", "system KiB/idle conn (MemAvailable)", ["sys_kib_per_conn"], False),
    ("idle", "kernel TCP buffers KiB/idle conn (sockstat)", ["tcp_buffers_kib_per_conn"], False),
    ("idle", "idle conns held", ["connections"], True),
]
ORDER = ["direct", "haproxy", "nginx", "sniproxy", "sniway"]


def dig(obj, path):
    for p in path:
        if not isinstance(obj, dict) or p not in obj:
            return None
        obj = obj[p]
    return obj if isinstance(obj, (int, float)) else None


def fmt(x):
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def main():
    runs = defaultdict(list)  # (case, target) -> [result]
    errors = 0
    for line in open(sys.argv[1]):
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)
        res = r["result"]
        errors += int(res.get("errors", 0) or 0) + (1 if "error" in res else 0)
        runs[(r["case"], res["target"])].append(res)
    targets = [t for t in ORDER if any(k[1] == t for k in runs)]
    peers = [t for t in targets if t not in ("direct", "sniway")]
    head = ["figure"] + [f"{t} median [min–max]" for t in targets]
    if peers and "sniway" in targets:
        head += ["best peer", "sniway / best peer"]
    if "direct" in targets and "sniway" in targets:
        head += ["sniway / direct"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for case, label, path, higher in FIGURES:
        stats = {}
        for t in targets:
            vals = [v for v in (dig(x, path) for x in runs.get((case, t), [])) if v is not None]
            if vals:
                stats[t] = (statistics.median(vals), min(vals), max(vals), len(vals))
        if not stats:
            continue
        row = [label]
        for t in targets:
            s = stats.get(t)
            row.append(f"{fmt(s[0])} [{fmt(s[1])}–{fmt(s[2])}]" if s else "-")
        if peers and "sniway" in targets:
            pv = {t: stats[t][0] for t in peers if t in stats}
            if pv:
                best = (max if higher else min)(pv, key=pv.get)
                row.append(f"{best} {fmt(pv[best])}")
                sw = stats.get("sniway")
                row.append(f"{sw[0] / pv[best]:.2f}x" if sw and pv[best] else "-")
            else:
                row += ["-", "-"]
        if "direct" in targets and "sniway" in targets:
            d, sw = stats.get("direct"), stats.get("sniway")
            ok = d and sw and d[0] and path[0] in ("gbit_per_s", "per_second")
            row.append(f"{sw[0] / d[0]:.2f}x" if ok else "")
        print("| " + " | ".join(row) + " |")
    rounds = max((len(v) for v in runs.values()), default=0)
    print(f"\n{rounds} round(s); errors in all runs: {errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
