#!/usr/bin/env python3
"""Quantiles of reserva_projection_lag_seconds between two /metrics scrapes.

Usage: lag_quantiles.py BEFORE AFTER
Prints, per subscription, the events handled between the scrapes and p50/p95/p99 in ms,
interpolated inside histogram buckets the way Prometheus' histogram_quantile does.
"""
import re
import sys

LINE = re.compile(
    r'^reserva_projection_lag_seconds_bucket\{subscription="([^"]+)",le="([^"]+)"\} (\S+)$'
)


def buckets(path):
    out = {}
    with open(path) as f:
        for line in f:
            m = LINE.match(line.strip())
            if m:
                sub, le, count = m.group(1), m.group(2), float(m.group(3))
                bound = float("inf") if le == "+Inf" else float(le)
                out.setdefault(sub, {})[bound] = count
    return out


def quantile(q, cumulative):
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]]
    if total <= 0:
        return float("nan")
    rank = q * total
    lower, below = 0.0, 0.0
    for b in bounds:
        c = cumulative[b]
        if c >= rank:
            if b == float("inf"):
                return lower
            return lower + (b - lower) * (rank - below) / max(c - below, 1e-12)
        lower, below = b, c
    return bounds[-2]


def main():
    before, after = buckets(sys.argv[1]), buckets(sys.argv[2])
    print(f"{'subscription':<12} {'events':>8} {'p50_ms':>8} {'p95_ms':>8} {'p99_ms':>8}")
    for sub in sorted(after):
        diff = {b: after[sub][b] - before.get(sub, {}).get(b, 0.0) for b in after[sub]}
        total = diff[max(diff)]
        qs = [quantile(q, diff) * 1000 for q in (0.5, 0.95, 0.99)]
        print(f"{sub:<12} {int(total):>8} {qs[0]:>8.2f} {qs[1]:>8.2f} {qs[2]:>8.2f}")


if __name__ == "__main__":
    main()
