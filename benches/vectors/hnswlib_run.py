#!/usr/bin/env python3
"""Benchmark hnswlib on a data set written by prepare.py.

Builds one hnswlib index (space 'cosine' or 'l2' from DATASET.json) with the
given M and ef_construction, timing add_items with --threads threads. Then,
for each ef, runs knn_query on all queries in one call with k=10 and a single
thread, and prints one JSON line per ef to stdout:

  {"peer": "hnswlib", "dataset": ..., "m": ..., "efc": ..., "threads": ...,
   "build_s": ..., "ef": ..., "recall10": ..., "qps": ...}

recall10 is the mean over queries of |result & gt[:10]| / 10; qps is the
number of queries divided by the wall time of the knn_query call (best of
--repeat runs).
"""
import argparse
import json
import os
import sys
import time

import hnswlib
import numpy as np

K = 10


def load(data, dataset, max_queries):
    with open(os.path.join(data, dataset + ".json")) as f:
        meta = json.load(f)
    n, d, nq, gt_k = meta["n"], meta["d"], meta["nq"], meta["gt_k"]

    def raw(suffix, dtype, rows, cols):
        path = os.path.join(data, f"{dataset}.{suffix}")
        return np.fromfile(path, dtype=dtype).reshape(rows, cols)

    base = raw("base.f32", "<f4", n, d)
    queries = raw("query.f32", "<f4", nq, d)
    gt = raw("gt.u32", "<u4", nq, gt_k)
    if max_queries:
        queries, gt = queries[:max_queries], gt[:max_queries]
    return meta, base, queries, gt


def recall_at_10(labels, gt):
    hits = (labels[:, :, None] == gt[:, None, :K].astype(labels.dtype)).any(axis=2)
    return float(hits.sum()) / (labels.shape[0] * K)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="directory written by prepare.py")
    ap.add_argument("--dataset", required=True, choices=["glove", "synth"])
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2, help="threads for the build")
    ap.add_argument("--ef", default="10,16,24,32,48,64,96,128,256,384,512",
                    help="comma-separated ef values to search with")
    ap.add_argument("--max-queries", type=int, default=0, help="use only the first N queries")
    ap.add_argument("--repeat", type=int, default=1, help="time each ef N times, keep the best")
    args = ap.parse_args()

    meta, base, queries, gt = load(args.data, args.dataset, args.max_queries)
    space = {"cosine": "cosine", "l2": "l2"}[meta["metric"]]
    index = hnswlib.Index(space=space, dim=meta["d"])
    index.init_index(max_elements=base.shape[0], ef_construction=args.efc, M=args.m,
                     random_seed=100)
    ids = np.arange(base.shape[0])
    t0 = time.perf_counter()
    index.add_items(base, ids, num_threads=args.threads)
    build_s = time.perf_counter() - t0
    print(f"hnswlib {args.dataset}: built n={base.shape[0]} in {build_s:.2f}s",
          file=sys.stderr, flush=True)

    for ef in (int(x) for x in args.ef.split(",") if x.strip()):
        index.set_ef(ef)
        best = float("inf")
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            labels, _ = index.knn_query(queries, k=K, num_threads=1)
            best = min(best, time.perf_counter() - t0)
        print(json.dumps({
            "peer": "hnswlib", "dataset": args.dataset, "m": args.m, "efc": args.efc,
            "threads": args.threads, "build_s": round(build_s, 3), "ef": ef,
            "recall10": round(recall_at_10(labels, gt), 5),
            "qps": round(queries.shape[0] / best, 1),
        }), flush=True)


if __name__ == "__main__":
    main()
