#!/usr/bin/env python3
"""Summarise vector-benchmark JSON lines as markdown tables.

Reads one or more files of JSON lines as printed by hnswlib_run.py and the
Rust benchmark binary (lines that are not JSON objects with "peer" and
"dataset" are ignored) and prints, per data set:

  * a summary: each peer's build time and its best qps among the ef values
    reaching recall10 >= TARGET, with ratios against hnswlib (ours/hnswlib,
    so qps ratio > 1 and build ratio < 1 are better);
  * the full recall/qps curve of each peer;
  * rows carrying a "filter" field (e.g. "10%") in their own tables, with no
    hnswlib comparison.

Runs are told apart by (peer, m, efc, threads); a peer is compared against
the hnswlib run with the same m, efc and threads when there is one.
"""
import argparse
import json
from collections import defaultdict


def read_rows(paths):
    rows = []
    for path in paths:
        with open(path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and "peer" in row and "dataset" in row:
                    rows.append(row)
    return rows


def run_key(row):
    return (row["peer"], row.get("m"), row.get("efc"), row.get("threads"))


def curve(rows):
    """ef -> (recall10, qps), keeping the best qps if an ef is repeated."""
    out = {}
    for r in rows:
        ef, rec, qps = r.get("ef"), float(r["recall10"]), float(r["qps"])
        if ef not in out or qps > out[ef][1]:
            out[ef] = (rec, qps)
    return dict(sorted(out.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))


def best_at(points, target):
    """(ef, recall, qps) with the highest qps among points at recall >= target."""
    ok = [(qps, ef, rec) for ef, (rec, qps) in points.items() if rec >= target]
    if not ok:
        return None
    qps, ef, rec = max(ok)
    return ef, rec, qps


def build_s(rows):
    vals = [float(r["build_s"]) for r in rows if r.get("build_s") is not None]
    return min(vals) if vals else None


def fmt(x, nd=2):
    return "-" if x is None else f"{x:,.{nd}f}"


def label(key):
    peer, m, efc, threads = key
    return f"{peer} (M={m}, efc={efc}, t={threads})"


def summary(runs, targets):
    """Markdown summary table for unfiltered runs of one data set."""
    refs = {k[1:]: rows for k, rows in runs.items() if k[0] == "hnswlib"}
    fallback = next(iter(refs.values()), None)
    head = "| peer | M | efc | threads | build s | build ratio |"
    sep = "|---|---|---|---|---|---|"
    for t in targets:
        head += f" qps @ R>={t} | ef | recall | qps ratio |"
        sep += "---|---|---|---|"
    lines = [head, sep]
    for key, rows in runs.items():
        ref = refs.get(key[1:], fallback)
        b, rb = build_s(rows), build_s(ref) if ref else None
        pts, ref_pts = curve(rows), curve(ref) if ref else {}
        cells = [key[0], str(key[1]), str(key[2]), str(key[3]), fmt(b),
                 fmt(b / rb) if b and rb else "-"]
        for t in targets:
            mine, theirs = best_at(pts, t), best_at(ref_pts, t)
            if mine is None:
                top = max(rec for rec, _ in pts.values()) if pts else None
                cells += [f"not reached (max R {fmt(top, 4)})", "-", "-", "-"]
                continue
            ratio = fmt(mine[2] / theirs[2]) if theirs else "-"
            cells += [fmt(mine[2], 0), str(mine[0]), fmt(mine[1], 4), ratio]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def curves(runs):
    """Per-run recall/qps tables; a "plan" field, when present, gets a column."""
    lines = []
    for key, rows in runs.items():
        plans = {r.get("ef"): r["plan"] for r in rows if "plan" in r}
        lines += ["", f"**{label(key)}** build {fmt(build_s(rows))} s", "",
                  "| ef | recall10 | qps |" + (" plan |" if plans else ""),
                  "|---|---|---|" + ("---|" if plans else "")]
        for ef, (rec, qps) in curve(rows).items():
            plan = f" {plans.get(ef, '')} |" if plans else ""
            lines.append(f"| {ef} | {rec:.4f} | {qps:,.0f} |{plan}")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", help="JSON-lines result files")
    ap.add_argument("--target", default="0.99",
                    help="comma-separated recall10 targets (default 0.99)")
    args = ap.parse_args()
    targets = [float(t) for t in args.target.split(",")]

    groups = defaultdict(lambda: defaultdict(list))  # (dataset, filter) -> key -> rows
    for row in read_rows(args.files):
        groups[(row["dataset"], row.get("filter"))][run_key(row)].append(row)
    if not groups:
        print("no result rows found")
        return

    for (dataset, filt) in sorted(groups, key=lambda g: (g[0], g[1] is not None, str(g[1]))):
        runs = groups[(dataset, filt)]
        if filt is None:
            print(f"## {dataset}\n")
            print("\n".join(summary(runs, targets)))
            print("\nRatios are ours / hnswlib: qps ratio > 1 and build ratio < 1 are better.")
        else:
            print(f"## {dataset}, filter {filt}\n")
            lines = ["| peer | M | efc | threads |" + "".join(
                f" qps @ R>={t} | ef |" for t in targets),
                "|---|---|---|---|" + "---|---|" * len(targets)]
            for key, rows in runs.items():
                cells = [str(x) for x in key]
                for t in targets:
                    best = best_at(curve(rows), t)
                    cells += [fmt(best[2], 0), str(best[0])] if best else ["not reached", "-"]
                lines.append("| " + " | ".join(cells) + " |")
            print("\n".join(lines))
        print("\n".join(curves(runs)))
        print()


if __name__ == "__main__":
    main()
