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
EPS = 1e-4
FALLBACK = 1.0


def kl_for_candidate(hist, i):
    raw = hist[:i].astype(np.float64)
    p = raw.copy()
    p[i - 1] += hist[i:].astype(np.float64).sum()
    # Level of each bin: i // 128 bins per level, the last level takes the rest.
    per_level = i // LEVELS
    level = np.minimum(np.arange(i) // per_level, LEVELS - 1)
    in_p = p != 0
    level_mass = np.bincount(level, weights=raw, minlength=LEVELS)
    level_nonzero = np.bincount(level, weights=in_p.astype(np.float64), minlength=LEVELS)
    share = np.divide(level_mass, level_nonzero, out=np.zeros(LEVELS), where=level_nonzero > 0)
    q = np.where(in_p, share[level], 0.0)
    if p.sum() == 0:
        return 0.0
    p = p / p.sum()
    if q.sum() > 0:
        q = q / q.sum()
    q = np.where(q == 0, EPS, q)  # only matters where p > 0
    keep = p > 0
    return float(np.sum(p[keep] * np.log(p[keep] / q[keep])))


def entropy(hist, width):
    if width == 0:
        return 0, FALLBACK
    best_i, best_kl = None, None
    for i in range(LEVELS, len(hist) + 1):
        kl = kl_for_candidate(hist, i)
        if best_kl is None or kl < best_kl:
            best_i, best_kl = i, kl
    return best_i, (best_i + 0.5) * width


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
