"""k-means as MMT runs it (scikit-learn ``KMeans``: greedy k-means++ seeding, Lloyd iterations with a
tolerance stop), written in torch so that it runs where the features are: CUDA tensors on their GPU,
numpy arrays and CPU tensors on the CPU (docs/design.md §4.3).

The cost of k-means++ is its sequential choice of K centres, each from 2 + floor(ln K) candidates
scored over all N samples: written naively that is K passes over the (N, D) features, a matrix-vector
product each (memory-bound). Here the candidates' distance columns come in blocks from one matrix
product (GEMM): a *pool* of samples is drawn from the distance-squared distribution of the moment the
pool is drawn, and each later candidate is taken from the pool by rejection (accepted with probability
d2_now / d2_then <= 1, since distances only shrink as centres are added), which makes every accepted
candidate an exact draw from the current distribution (rejection sampling). Same algorithm and same
distribution of seeds as scikit-learn's greedy k-means++; a different random stream.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

__all__ = ["KMeansResult", "kmeans", "kmeans_plus_plus_torch", "lloyd", "as_torch_features"]

logger = logging.getLogger(__name__)

#: scikit-learn KMeans's defaults (MMT's examples/mmt_train_kmeans.py leaves them): stop when the centres moved
#: by at most tol x the mean per-dimension variance of the data (sum of squared shifts), or the labels repeat
TOL = 1e-4
#: today's cap on Lloyd iterations (scikit-learn's is 300; Lloyd here stops at convergence long before)
MAX_ITER = 100
#: rows of the (rows, K) distance block of one assignment step: bounds its memory at N up to 32,621
CHUNK = 4096


@dataclass
class KMeansResult:
    """Labels (N,) int64 (cluster ids as the centres are ordered), centres (K, D), inertia and iterations run."""

    labels: np.ndarray
    centres: Any  # torch (K, D) float32 on the features' device
    inertia: float  # sum of squared distances to the assigned centres
    iterations: int  # Lloyd iterations run
    seed_columns: int  # distance columns the seeding computed (its cost, in units of one sample's N distances)


def as_torch_features(features: Any) -> Any:
    """(N, D) float32 torch tensor on the features' device: numpy arrays and CPU tensors share memory when they can."""
    import torch

    if isinstance(features, torch.Tensor):
        x = features.detach()
        return x if x.dtype == torch.float32 else x.float()
    return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))


def _sq_dist(a: Any, a_sq: Any, b: Any, b_sq: Optional[Any] = None) -> Any:
    """(len(a), len(b)) squared Euclidean distances of the rows of ``a`` (squared norms ``a_sq``) to the rows of
    ``b``, clamped at 0; one matrix product."""
    import torch

    b_sq = (b * b).sum(dim=1) if b_sq is None else b_sq
    d = torch.addmm(b_sq[None, :], a, b.T, beta=1.0, alpha=-2.0)  # |b|^2 - 2 a.b in the product's own pass
    return d.add_(a_sq[:, None]).clamp_(min=0.0)


def kmeans_plus_plus_torch(x: Any, k: int, seed: int, *, trials: Optional[int] = None,
                           pool: int = 1024) -> Tuple[Any, int]:
    """Greedy k-means++ (scikit-learn's ``_kmeans_plusplus``): each next centre is, of ``trials`` (default
    2 + floor(ln k)) samples drawn with probability proportional to their squared distance to the nearest
    centre so far, the one that leaves the smallest total. Candidates are drawn by rejection from a pool
    (module docstring), whose distance columns are one (N, ``pool``) matrix product.

    ``x``: (N, D) float32 torch tensor (any device). Random draws come from numpy's generator seeded with
    ``seed``, so the seeds do not depend on the device. Returns ((k, D) centres, rows of ``x``; the number
    of distance columns computed)."""
    import torch

    n = x.shape[0]
    trials = 2 + int(math.log(k)) if trials is None else int(trials)
    rng = np.random.default_rng(seed)
    x_sq = (x * x).sum(dim=1)
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = rng.integers(n)
    # the sequential per-centre steps touch (trials, N) values: on the CPU in numpy (views of the torch results;
    # no thread-pool hand-off per small operation), on a GPU in torch
    on_cpu = x.device.type == "cpu"
    d2 = _sq_dist(x[chosen[0]:chosen[0] + 1], x_sq[chosen[0]:chosen[0] + 1], x, x_sq)[0]
    if on_cpu:
        d2 = d2.numpy()
    columns = 1
    pool_idx = np.empty(0, dtype=np.int64)  # samples drawn from the distribution at the last refresh
    pool_u = np.empty(0)  # their uniforms for the acceptance test
    pool_d2 = np.empty(0)  # their squared distance at the refresh
    cols = None  # (len(pool_idx), N) distances of the pool's samples to every sample (rows: contiguous)
    pos = 0
    j = 1
    while j < k:
        picked, picked_cols = [], []  # this step's candidates: sample ids, their distance columns
        while len(picked) < trials:
            if pos >= pool_idx.size:  # refresh: a new pool from the current distribution
                d2_cpu = d2.astype(np.float64) if on_cpu else d2.double().cpu().numpy()
                total = d2_cpu.sum()
                if total <= 0:  # every sample sits on a centre already
                    break
                m = int(min(pool, trials * (k - j) + 8 * trials))  # acceptance is high: about what is left
                pool_idx = rng.choice(n, size=m, p=d2_cpu / total)
                pool_u = rng.random(m)
                pool_d2 = d2_cpu[pool_idx]
                sel = torch.as_tensor(pool_idx, device=x.device)
                cols = _sq_dist(x[sel], x_sq[sel], x, x_sq)
                if on_cpu:
                    cols = cols.numpy()
                columns += m
                pos = 0
            # accept pool entries whose uniform is below d2 now / d2 at the refresh; a batch tested at once
            start, stop = pos, min(pool_idx.size, pos + 4 * trials)
            now = d2[pool_idx[start:stop]] if on_cpu else \
                d2[torch.as_tensor(pool_idx[start:stop], device=x.device)].double().cpu().numpy()
            ok = pool_u[start:stop] * pool_d2[start:stop] < now
            for t in range(start, stop):
                pos = t + 1
                if ok[t - start]:
                    picked.append(int(pool_idx[t]))
                    picked_cols.append(cols[t])
                    if len(picked) == trials:
                        break
        if not picked:
            chosen[j:] = rng.integers(n, size=k - j)
            break
        if on_cpu:
            cand = np.stack(picked_cols)
            best = int(np.argmin(np.minimum(d2[None, :], cand).sum(axis=1, dtype=np.float64)))
            d2 = np.minimum(d2, cand[best])
        else:
            cand = torch.stack(picked_cols)
            best = int(torch.argmin(torch.minimum(d2[None, :], cand).double().sum(dim=1)))
            d2 = torch.minimum(d2, cand[best])
        chosen[j] = picked[best]
        j += 1
    return x[torch.as_tensor(chosen, device=x.device)].clone(), columns


def _means(x: Any, labels: Any, k: int, centres: Any) -> Tuple[Any, Any]:
    """Centres as the means of their members; an empty cluster takes the sample farthest from its (old) centre
    (scikit-learn's ``_relocate_empty_clusters``: that sample leaves its old cluster). Returns (centres, labels)."""
    import torch

    counts = torch.bincount(labels, minlength=k)
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel():
        far = torch.argsort(_dist_to_own(x, centres, labels), descending=True, stable=True)[:empty.numel()]
        labels = labels.clone()
        labels[far] = empty[:far.numel()]
        counts = torch.bincount(labels, minlength=k)
    sums = torch.zeros(k, x.shape[1], dtype=torch.float32, device=x.device).index_add_(0, labels, x)
    return sums / counts.clamp(min=1).to(sums.dtype)[:, None], labels


def _dist_to_own(x: Any, centres: Any, labels: Any) -> Any:
    """(N,) squared Euclidean distance of every row to its own centre (difference first: no cancellation)."""
    import torch

    return torch.linalg.vector_norm(x - centres[labels], dim=1) ** 2


#: a bound decides a label only with this margin (Euclidean distance units; float32 distances of unit-scale
#: vectors are accurate to ~1e-6): within it the sample gets its full distance row
BOUND_SLACK = 1e-5


def _rows_with_bounds(x: Any, x_sq: Any, centres: Any, rows: Any, labels: Any, upper: Any, lower: Any,
                      chunk: int = CHUNK) -> None:
    """Full distance rows of the samples ``rows``: their labels, exact upper bounds and lower bounds (in place)."""
    import torch

    c_sq = (centres * centres).sum(dim=1)
    for s in range(0, rows.numel(), chunk):
        r = rows[s:s + chunk]
        d = torch.addmm(c_sq[None, :], x[r], centres.T, beta=1.0, alpha=-2.0).add_(x_sq[r][:, None])
        d = d.clamp_(min=0.0).sqrt_()
        dmin, lab = d.min(dim=1)
        lower[r], labels[r], upper[r] = d, lab, dmin


def lloyd(x: Any, centres: Any, *, max_iter: int = MAX_ITER, tol: float = TOL) -> Tuple[Any, Any, Any, int]:
    """Lloyd's iterations as scikit-learn's ``_kmeans_single_lloyd``: assign, move every centre to its members'
    mean; stop when the labels repeat (strict convergence) or the summed squared centre shift is at most
    ``tol`` x the mean per-dimension variance of ``x``, after assigning once more to the final centres.
    Returns (labels, squared distances, centres, iterations run).

    The assignments after the first skip the samples whose label cannot change (Elkan 2003, "Using the triangle
    inequality to accelerate k-means"): per sample an upper bound on the distance to its own centre and a lower
    bound on the distance to every centre, each moved by that centre's shift; a sample whose upper bound (made
    exact if need be) stays below every other centre's lower bound keeps its label, the others get their full
    distance row. Same labels as the full assignment (up to exact ties); (N, K) float32 bounds in memory
    (196 MB at N 32,621, K 1,500)."""
    import torch

    n, k = x.shape[0], centres.shape[0]
    x_sq = (x * x).sum(dim=1)
    tol_abs = float(tol) * float(x.var(dim=0, unbiased=False).mean())
    labels = torch.empty(n, dtype=torch.int64, device=x.device)
    upper = torch.empty(n, dtype=torch.float32, device=x.device)
    lower = torch.empty(n, k, dtype=torch.float32, device=x.device)
    _rows_with_bounds(x, x_sq, centres, torch.arange(n, device=x.device), labels, upper, lower)
    prev = None
    it = 0
    while True:
        it += 1
        if prev is not None and torch.equal(labels, prev):  # strict convergence: centres are these labels' means
            break
        new, moved = _means(x, labels, k, centres)
        if not torch.equal(moved, labels):  # empty clusters took samples: their labels are decided anew
            upper[moved != labels] = float("inf")
            labels = moved
        delta = torch.linalg.vector_norm(new - centres, dim=1)
        shift = float((delta * delta).sum())
        centres, prev = new, labels
        lower.sub_(delta[None, :]).clamp_(min=0.0)
        upper = upper + delta[labels]
        labels = labels.clone()
        _elkan_assign(x, x_sq, centres, labels, upper, lower)
        if shift <= tol_abs or it >= int(max_iter):
            break
    return labels, _dist_to_own(x, centres, labels), centres, it


def _elkan_assign(x: Any, x_sq: Any, centres: Any, labels: Any, upper: Any, lower: Any) -> None:
    """One bounded assignment of :func:`lloyd` (labels and bounds updated in place)."""
    import torch

    if centres.shape[0] == 1:
        return
    own = labels[:, None]
    kept = lower.gather(1, own)
    lower.scatter_(1, own, float("inf"))  # the smallest lower bound over the *other* centres
    other = lower.min(dim=1).values
    lower.scatter_(1, own, kept)
    need = torch.nonzero(upper > other - BOUND_SLACK).flatten()
    if 0 < need.numel() <= x.shape[0] // 2:  # make the upper bound exact, test again (when few rows would be
        # spared, the exact distances cost an (N, D) pass that saves less than it costs: full rows straight away)
        upper[need] = torch.linalg.vector_norm(x[need] - centres[labels[need]], dim=1)
        need = need[upper[need] > other[need] - BOUND_SLACK]
    if need.numel():
        _rows_with_bounds(x, x_sq, centres, need, labels, upper, lower)


def kmeans(features: Any, k: int, *, seed: int = 1, max_iter: int = MAX_ITER, tol: float = TOL,
           trials: Optional[int] = None) -> KMeansResult:
    """Greedy k-means++ seeding then Lloyd (:func:`lloyd`) on ``features`` (N, D) as given (normalise first),
    on the features' device; float32 products at full precision on CUDA (no TF32)."""
    import torch

    x = as_torch_features(features)
    prec = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.no_grad():
            init, columns = kmeans_plus_plus_torch(x, int(k), int(seed), trials=trials)
            labels, dmin, centres, it = lloyd(x, init, max_iter=max_iter, tol=tol)
            inertia = float(dmin.double().sum())
    finally:
        torch.set_float32_matmul_precision(prec)
    return KMeansResult(labels=labels.cpu().numpy().astype(np.int64, copy=False), centres=centres,
                        inertia=inertia, iterations=it, seed_columns=columns)
