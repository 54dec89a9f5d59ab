#!/usr/bin/env python
"""Benchmark the vectorised ranking evaluator at Market-1501 size (docs/design.md §3).

Builds a random (num_query x num_gallery) distance matrix with identity structure (Market-1501:
3,368 x 15,913, 751 identities, 6 cameras), or one from random D-dim features with
``--features``, then prints the wall time and peak-RSS increase of
``inclr_fastreid.evaluation.rank.evaluate_rank``. With ``--reference`` it also times FastReID's
pure-Python ``eval_market1501`` on the first ``--reference-queries`` queries, extrapolates that
linearly to all queries (labelled so) and checks both give the same numbers on that subset.

    python benchmarks/benchmark_evaluator.py [--reference] [--threads 2]
"""
from __future__ import annotations

import argparse
import gc as gc_module
import math
import resource
import time
import warnings

import numpy as np
import torch

from inclr_fastreid.benchmarking.memory import reset_peak_rss, status_mib
from inclr_fastreid.evaluation.rank import DEFAULT_MAX_MEMORY_BYTES, evaluate_rank


def _rss_mib(field: str) -> float:
    """VmRSS / VmHWM of this process in MiB (ru_maxrss for VmHWM where /proc is missing)."""
    try:
        value = status_mib(field)
    except OSError:
        value = math.nan
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if math.isnan(value) else value


def measure(fn):
    """Run ``fn()``; return (result, seconds, peak RSS MiB, peak increase over start MiB)."""
    exact = reset_peak_rss()
    start_rss = _rss_mib("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = _rss_mib("VmHWM")
    return out, seconds, peak, (peak - start_rss) if exact else float("nan")


def make_market_like(num_q: int, num_g: int, num_ids: int, num_cams: int, feat_dim: int,
                     seed: int):
    """Ids/cameras like Market-1501 and float32 distances where same-identity pairs are closer."""
    rng = np.random.default_rng(seed)
    g_pids = rng.integers(0, num_ids, num_g)
    g_pids[:num_ids] = np.arange(num_ids)                 # every identity in the gallery
    q_pids = rng.choice(g_pids, num_q)
    q_cams = rng.integers(0, num_cams, num_q)
    g_cams = rng.integers(0, num_cams, num_g)
    if feat_dim > 0:
        centres = torch.from_numpy(rng.standard_normal((num_ids, feat_dim), dtype=np.float32))
        noise = 3.2                                       # same-id cosine ~0.09
        qf = centres[q_pids] + noise * torch.randn(num_q, feat_dim)
        gf = centres[g_pids] + noise * torch.randn(num_g, feat_dim)
        qf = torch.nn.functional.normalize(qf, dim=1)
        gf = torch.nn.functional.normalize(gf, dim=1)
        dist = (1 - qf @ gf.T).numpy()                   # cosine distance, FastReID's default
    else:  # negatives ~ N(1, 0.1), true matches ~ N(0.6, 0.12): R1 ~ 100 %, mAP ~ 75 %
        dist = np.empty((num_q, num_g), dtype=np.float32)
        for s in range(0, num_q, 256):           # row blocks keep the generator's RSS small
            block = dist[s:s + 256]
            block[:] = 1 + 0.1 * rng.standard_normal(block.shape, dtype=np.float32)
            same = q_pids[s:s + 256, None] == g_pids[None, :]
            block[same] = 0.6 + 0.12 * rng.standard_normal(int(same.sum()), dtype=np.float32)
    return dist, q_pids, g_pids, q_cams, g_cams


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-query", type=int, default=3368)
    p.add_argument("--num-gallery", type=int, default=15913)
    p.add_argument("--num-ids", type=int, default=751)
    p.add_argument("--num-cams", type=int, default=6)
    p.add_argument("--features", type=int, default=0, metavar="D",
                   help="build the distances from random D-dim features (e.g. 2048) instead")
    p.add_argument("--max-memory-mb", type=float, default=DEFAULT_MAX_MEMORY_BYTES / 2 ** 20,
                   help="evaluator working-set bound (MiB)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu",
                   help="evaluate a torch tensor on this device (e.g. cuda); default: numpy input")
    p.add_argument("--reference", action="store_true",
                   help="also time FastReID's Python eval_market1501 on a query subset")
    p.add_argument("--reference-queries", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    dist, qp, gp, qc, gc = make_market_like(args.num_query, args.num_gallery, args.num_ids,
                                            args.num_cams, args.features, args.seed)
    print(f"distmat {dist.shape[0]} x {dist.shape[1]} {dist.dtype} "
          f"({dist.nbytes / 2 ** 20:.0f} MiB), {args.num_ids} ids, {args.num_cams} cams, "
          f"{'features D=%d' % args.features if args.features else 'random distances'}; "
          f"torch threads {torch.get_num_threads()}; process RSS {_rss_mib('VmRSS'):.0f} MiB")

    budget = int(args.max_memory_mb * 2 ** 20)
    gc_module.collect()
    if args.device == "cpu":
        run = lambda: evaluate_rank(dist, qp, gp, qc, gc, max_rank=50,  # noqa: E731
                                    max_memory_bytes=budget)
    else:
        dist_dev = torch.from_numpy(dist).to(args.device)
        evaluate_rank(dist_dev[:64], qp[:64], gp, qc[:64], gc)     # warm-up (CUDA context)
        run = lambda: evaluate_rank(dist_dev, qp, gp, qc, gc, max_rank=50,  # noqa: E731
                                    max_memory_bytes=budget)
    (cmc, ap, inp), sec, peak, inc = measure(run)
    print(f"inclr evaluate_rank ({args.device}): {sec:7.2f} s  peak RSS {peak:6.0f} MiB "
          f"(+{inc:.0f} MiB over the distmat-holding process)  valid queries {len(ap)}  "
          f"R1 {cmc[0] * 100:.2f}  mAP {np.mean(ap) * 100:.2f}  mINP {np.mean(inp) * 100:.2f}")

    if args.reference:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from fastreid.evaluation.rank import eval_market1501
        n = min(args.reference_queries, args.num_query)
        sub = (dist[:n], qp[:n], gp, qc[:n], gc)
        (rc, rap, rinp), rsec, rpeak, rinc = measure(lambda: eval_market1501(*sub, 50))
        print(f"FastReID eval_market1501 (python), {n} queries: {rsec:7.2f} s  peak RSS "
              f"{rpeak:6.0f} MiB (+{rinc:.0f} MiB)")
        print(f"  EXTRAPOLATED to {args.num_query} queries (x{args.num_query / n:.1f}, linear): "
              f"{rsec * args.num_query / n:7.1f} s")
        (oc, oap, oinp), osec, _, _ = measure(lambda: evaluate_rank(*sub, max_rank=50))
        print(f"inclr evaluate_rank on the same {n} queries: {osec:7.3f} s; max |diff| vs "
              f"FastReID: cmc {np.abs(oc - rc).max():.1e}  AP "
              f"{np.abs(oap - np.asarray(rap)).max():.1e}  INP "
              f"{np.abs(oinp - np.asarray(rinp)).max():.1e}")
        values, order = torch.sort(torch.from_numpy(dist[:n]), dim=1, stable=True)
        match = torch.from_numpy(gp)[order] == torch.from_numpy(qp[:n])[:, None]
        tied = ((values[:, 1:] == values[:, :-1]) & (match[:, 1:] != match[:, :-1])).any(1)
        print(f"  queries with a match/non-match distance tie: {int(tied.sum())} of {n} (their AP/"
              f"INP may differ: FastReID's np.argsort order among ties is unspecified)")


if __name__ == "__main__":
    main()
