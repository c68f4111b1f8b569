#!/usr/bin/env python3
"""Reference INT8 calibration thresholds, written from the method descriptions.

Usage: thresholds_reference.py HISTOGRAMS.json
Input:  {"histograms": [{"name", "bins": [int...], "bin_width", "min", "max",
                         "percentiles": [p...]}]}
Output (stdout, JSON): {name: {"entropy_bins", "entropy_threshold",
                               "minmax", "percentile": [T per input p]}}
"""
import json
import sys

import numpy as np

LEVELS = 128
FALLBACK = 1.0


def kl_for_candidate(hist, i):
    """KL(P||Q) for candidate i, with numpy's digitize over linspace edges
    (the formulation of NVIDIA's pytorch-quantization histogram calibrator)."""
    h = hist.astype(np.float64).copy()
    h[0] = h[1]  # exact zeros are set aside
    total = h.sum()
    if total == 0:
        return 0.0
    edges = np.linspace(0, i, num=LEVELS + 1)
    level = np.digitize(np.arange(i), edges) - 1
    level[h[:i] == 0] = -1
    used = level >= 0
    counts = np.bincount(level[used], weights=h[:i][used], minlength=LEVELS)
    members = np.bincount(level[used], minlength=LEVELS)
    q = np.zeros(i)
    q[used] = counts[level[used]] / members[level[used]]
    p = h[:i].copy()
    p[-1] += h[i:].sum()
    p /= p.sum()
    if q.sum() == 0:
        return float("inf")
    q /= q.sum()
    if np.any((p > 0) & (q == 0)):
        return float("inf")
    keep = p > 0
    return float(np.sum(p[keep] * np.log(p[keep] / q[keep])))


def entropy(hist, width):
    if width == 0:
        return 0, FALLBACK
    n = len(hist)
    kls = np.array([kl_for_candidate(hist, i) for i in range(LEVELS, n + 1)])
    if np.all(np.isinf(kls)):
        return n, n * width
    last = len(kls) - 1 - int(np.argmin(kls[::-1]))  # the largest i among equal minima
    i = LEVELS + last
    return i, i * width


def minmax(lo, hi):
    t = max(abs(lo), abs(hi))
    return t if t > 0 else FALLBACK


def percentile(hist, width, pct):
    total = float(hist.sum())
    if total == 0 or width <= 0:
        return FALLBACK
    cum = np.cumsum(hist.astype(np.float64))
    target = pct / 100.0 * total
    k = int(np.argmax(cum >= target))  # first bin whose upper edge reaches the target
    return (k + 1) * width


def main():
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    out = {}
    for h in doc["histograms"]:
        hist = np.array(h["bins"], dtype=np.uint64)
        width = float(h["bin_width"])
        i, t = entropy(hist, width)
        out[h["name"]] = {
            "entropy_bins": i,
            "entropy_threshold": t,
            "minmax": minmax(float(h["min"]), float(h["max"])),
            "percentile": [percentile(hist, width, float(p)) for p in h.get("percentiles", [])],
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
