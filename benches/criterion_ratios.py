#!/usr/bin/env python3
"""Print criterion results as ratio tables for BENCHMARKS.md.

Usage: benches/criterion_ratios.py [GROUP_PREFIX ...] [--baseline NAME ...]

Reads target/criterion/**/new/{benchmark,estimates}.json (written by `cargo bench`) and,
for every benchmark group whose id starts with one of the prefixes, prints the median
time of each function and its speed relative to the group's baseline function (the
first of the --baseline names present in the group; default: raw, lz4-raw, picked).
A ratio above 1 means faster than the baseline.
"""
import json
import os
import sys
from collections import OrderedDict


def load(root):
    groups = OrderedDict()
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        name = bench["function_id"] or ""
        if bench.get("value_str"):
            name = f"{name}/{bench['value_str']}" if name else bench["value_str"]
        tput = bench.get("throughput") or {}
        nbytes = tput.get("Bytes") or tput.get("BytesDecimal")
        groups.setdefault(bench["group_id"], {})[name] = (
            est["median"]["point_estimate"],
            nbytes,
        )
    return groups


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns:.0f} ns"


def main(argv):
    prefixes, baselines = [], []
    it = iter(argv)
    for arg in it:
        if arg == "--baseline":
            baselines.append(next(it))
        else:
            prefixes.append(arg)
    baselines = baselines or ["raw", "lz4-raw", "picked"]
    groups = load(os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "criterion"))
    print("| group | function | median | throughput | vs baseline |")
    print("|---|---|---|---|---|")
    for gid in sorted(groups):
        if prefixes and not any(gid.startswith(p) for p in prefixes):
            continue
        funcs = groups[gid]
        base = next(
            (n for b in baselines for n in funcs if n == b or n.startswith(b + "/")), None
        )
        for name, (ns, nbytes) in sorted(funcs.items(), key=lambda kv: kv[0] != base):
            tput = f"{nbytes / ns:.2f} GB/s" if nbytes else ""
            ratio = f"{funcs[base][0] / ns:.2f}x" if base else ""
            print(f"| {gid} | {name} | {fmt_time(ns)} | {tput} | {ratio} |")


if __name__ == "__main__":
    main(sys.argv[1:])
