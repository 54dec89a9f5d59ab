"""Sparse k-reciprocal Jaccard distance (Zhong et al., CVPR 2017), docs/design.md §4.3 step 2.

Same numbers as the dense implementation of yxgeee/SpCL ``spcl/utils/faiss_rerank.py`` (which
UDA code for re-ID uses to feed DBSCAN), without ever holding an N x N array:

1. ``initial_rank``: the k1 nearest neighbours of every point *including itself* (entry 0),
   by Euclidean distance on L2-normalised features.
2. ``R(i, k)``: i's k-reciprocal set, ``{j in L_k(i) : i in L_k(j)}`` where ``L_k`` is the first
   k entries of ``initial_rank`` — k = k1, and the half list k = ``int(np.around(k1 / 2)) + 1``
   (SpCL slices ``initial_rank[i, :round(k1/2) + 1]``; ``np.around`` rounds half to even).
3. Expansion: ``E(i) = R(i, k1) ∪ R(c, half)`` for every ``c in R(i, k1)`` with
   ``|R(c, half) ∩ R(i, k1)| > 2/3 |R(c, half)|``.
4. ``V[i, j] = softmax_j(-d(i, j))`` over ``j in E(i)``, ``d = 2 - 2 cos`` (SpCL's
   ``2 - 2 * mm(f_i, f_E)``, the squared Euclidean distance of unit vectors).
5. Query expansion (k2 > 1): ``V[i] <- mean(V[initial_rank[i, :k2]])`` (self included).
6. ``S_ij = sum_k min(V_ik, V_jk)`` and ``d_J = 1 - S / (2 - S)``, clipped at 0.

Only pairs with ``d_J <= max_distance`` are kept. Since ``d_J`` falls as S grows,
``d_J <= m  <=>  S >= 2 (1 - m) / (2 - m)`` (0.1818 for m = 0.9): pairs that share no support
(S = 0, d_J = 1) are never even visited. V lives in CSR (O(N * |E| * k2) entries); the min-sum is
an inverted-index loop compiled with numba over the upper triangle (j >= i) only, run over row
blocks in threads (nogil), then mirrored, so the result is exactly symmetric. Weights and sums are
float64 (SpCL: float32), which moves d_J by ~1e-6 at most.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Optional

import numpy as np
import scipy.sparse as sp
from numba import njit

from .csr_blocks import append_sorted_row, assemble_csr, default_num_threads, run_row_blocks
from .k_reciprocal import k_reciprocal_weights
from .knn import as_float32_features, is_cuda_tensor, knn_search, l2_normalize

__all__ = ["compute_jaccard_distance", "jaccard_from_knn", "k_reciprocal_weights", "jaccard_from_weights",
           "default_num_threads"]


# ----------------------------------------------------------------------------------------------
# Step 6, numba kernels: the min-sum S over the upper triangle by row blocks, then its mirror image
# ----------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _min_sum_kernel(vp, vi, vd, cp, ci, cd, max_distance, start, end):  # pragma: no cover - compiled
    n = vp.shape[0] - 1
    acc = np.zeros(n, np.float64)
    stamp = np.full(n, -1, np.int64)
    touched = np.empty(n, np.int64)
    counts = np.zeros(end - start, np.int64)
    cols = np.empty(max(16, (end - start) * 32), np.int64)
    vals = np.empty(cols.shape[0], np.float64)
    kept_j = np.empty(n, np.int64)
    kept_d = np.empty(n, np.float64)
    nnz = 0
    for i in range(start, end):
        nt = 0
        # inverted index: only j sharing a support column k with i are visited, and only j >= i
        # (S is symmetric: the lower triangle is mirrored afterwards, see _mirror_upper_kernel)
        for p in range(vp[i], vp[i + 1]):
            k = vi[p]
            v = vd[p]
            lo = cp[k]
            hi = cp[k + 1]
            while lo < hi:  # first q with ci[q] >= i (column k's rows are sorted)
                mid = (lo + hi) >> 1
                if ci[mid] < i:
                    lo = mid + 1
                else:
                    hi = mid
            for q in range(lo, cp[k + 1]):
                j = ci[q]
                w = cd[q]
                if stamp[j] != i:
                    stamp[j] = i
                    acc[j] = 0.0
                    touched[nt] = j
                    nt += 1
                acc[j] += v if v < w else w
        nk = 0
        for a in range(nt):
            j = touched[a]
            s = acc[j]
            dj = 1.0 - s / (2.0 - s)
            if j == i or dj < 0.0:
                dj = 0.0  # S_ii = sum_k V_ik = 1 exactly in real arithmetic
            if dj <= max_distance:
                kept_j[nk] = j
                kept_d[nk] = dj
                nk += 1
        cols, vals, nnz = append_sorted_row(cols, vals, nnz, kept_j, kept_d, nk)
        counts[i - start] = nk
    return counts, cols[:nnz].copy(), vals[:nnz].copy()


@njit(cache=True, nogil=True)
def _mirror_upper_kernel(up, ui, ud):  # pragma: no cover - compiled
    """Full symmetric CSR from its upper triangle (diagonal included), rows sorted, O(nnz)."""
    n = up.shape[0] - 1
    lower = np.zeros(n, np.int64)
    for i in range(n):
        for p in range(up[i], up[i + 1]):
            if ui[p] != i:
                lower[ui[p]] += 1
    indptr = np.zeros(n + 1, np.int64)
    for r in range(n):
        indptr[r + 1] = indptr[r] + lower[r] + (up[r + 1] - up[r])
    indices = np.empty(indptr[n], np.int64)
    data = np.empty(indptr[n], np.float64)
    fill = indptr[:n].copy()
    for i in range(n):  # entries (i, j), j > i, land in row j in increasing i: sorted, before row j's own
        for p in range(up[i], up[i + 1]):
            j = ui[p]
            if j != i:
                indices[fill[j]] = i
                data[fill[j]] = ud[p]
                fill[j] += 1
    for r in range(n):
        o = indptr[r] + lower[r]
        for p in range(up[r], up[r + 1]):
            indices[o] = ui[p]
            data[o] = ud[p]
            o += 1
    return indptr, indices, data


def _check_params(n: int, k1: int, k2: int, max_distance: float) -> None:
    if int(k1) != k1 or k1 < 1:
        raise ValueError(f"k1 must be a positive integer, got {k1}")
    if int(k2) != k2 or k2 < 1:
        raise ValueError(f"k2 must be a positive integer, got {k2}")
    if k1 > n:
        raise ValueError(f"k1={k1} exceeds the number of samples N={n} (the kNN list includes the point "
                         f"itself, so k1 <= N); lower INCLR.CLUSTER.K1 or cluster more images")
    if k2 > k1:
        raise ValueError(f"k2={k2} must be <= k1={k1} (query expansion averages over the first k2 "
                         "entries of the k1 list)")
    if not (0.0 <= max_distance <= 1.0) or not np.isfinite(max_distance):
        raise ValueError(f"max_distance must lie in [0, 1] (Jaccard distances do), got {max_distance}")


def jaccard_from_weights(v: sp.csr_matrix, max_distance: float = 0.9,
                         n_threads: Optional[int] = None) -> sp.csr_matrix:
    """Step 6: ``d_J = 1 - S/(2 - S)``, ``S_ij = sum_k min(V_ik, V_jk)``, kept where ``d_J <= max_distance``."""
    n = v.shape[0]
    nt = n_threads or default_num_threads()
    vt = v.tocsc()  # column k -> the rows j with V_jk != 0 (the inverted index), sorted by j
    vt.sort_indices()
    args = (v.indptr.astype(np.int64), v.indices.astype(np.int64), v.data,
            vt.indptr.astype(np.int64), vt.indices.astype(np.int64), vt.data, float(max_distance))
    pieces = run_row_blocks(_min_sum_kernel, n, nt, args)
    del vt, args
    upper = assemble_csr(pieces, n, n)
    del pieces
    indptr, indices, data = _mirror_upper_kernel(upper.indptr.astype(np.int64), upper.indices.astype(np.int64),
                                                 upper.data)
    del upper
    return assemble_csr([(np.diff(indptr), indices, data)], n, n)


def jaccard_from_knn(features: np.ndarray, sims: np.ndarray, idx: np.ndarray, k1: int = 30, k2: int = 6,
                     max_distance: float = 0.9, *, n_threads: Optional[int] = None) -> sp.csr_matrix:
    """Jaccard distance from a precomputed kNN (self first, >= k1 columns; only the first k1 are used).

    ``features``: the (N, D) L2-normalised float32 features the kNN was searched on. Lets a caller run
    one search with a larger k and share it (e.g. with LGMR's neighbour overlap).
    """
    n = features.shape[0]
    _check_params(n, k1, k2, max_distance)
    if idx.shape[0] != n or idx.shape[1] < k1 or sims.shape != idx.shape:
        raise ValueError(f"kNN arrays of shape {idx.shape} / {sims.shape} do not fit N={n}, k1={k1}")
    if not np.all(idx[:, 0] == np.arange(n)):
        raise ValueError("the kNN lists must start with the query itself (knn_search(..., exclude_self=False))")
    v = k_reciprocal_weights(features, sims[:, :k1], idx[:, :k1], int(k2), n_threads=n_threads)
    return jaccard_from_weights(v, max_distance, n_threads=n_threads)


def compute_jaccard_distance(features: Any, k1: int = 30, k2: int = 6, max_distance: float = 0.9, *,
                             n_threads: Optional[int] = None,
                             timings: Optional[Dict[str, float]] = None) -> sp.csr_matrix:
    """k-reciprocal Jaccard distance (Zhong et al. 2017, as SpCL computes it) as a sparse CSR matrix.

    Stores ``d_J(i, j)`` for every pair with ``d_J <= max_distance`` (explicit zeros included, the
    diagonal always, as 0); a missing pair means ``d_J > max_distance`` (or, with ``max_distance=1``,
    ``d_J = 1``: pairs sharing no support are never stored). Symmetric, float64, memory
    O(N * k). ``features``: (N, D) numpy array or torch tensor (a CUDA tensor is searched on the GPU);
    rows are L2-normalised here. Raises ``ValueError`` on NaN/inf, wrong shape, ``k1 > N`` or ``k2 > k1``
    (no silent clamping: k1 changes the result). ``timings``, if given, receives ``knn`` and
    ``jaccard`` wall seconds.
    """
    t0 = time.perf_counter()
    cuda = is_cuda_tensor(features)
    if cuda:
        if features.ndim != 2:
            raise ValueError(f"features must be a 2-D (N, D) tensor, got shape {tuple(features.shape)}")
        n = int(features.shape[0])
    else:
        features = l2_normalize(as_float32_features(features))
        n = features.shape[0]
    _check_params(n, k1, k2, max_distance)
    sims, idx = knn_search(features, int(k1), normalize=cuda)
    if cuda:
        features = l2_normalize(as_float32_features(features))
    t1 = time.perf_counter()
    dist = jaccard_from_knn(features, sims, idx, int(k1), int(k2), max_distance, n_threads=n_threads)
    if timings is not None:
        timings["knn"] = t1 - t0
        timings["jaccard"] = time.perf_counter() - t1
    return dist
