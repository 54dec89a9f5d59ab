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

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import scipy.sparse as sp
from numba import njit

from .knn import as_float32_features, is_cuda_tensor, knn_search, l2_normalize

__all__ = ["compute_jaccard_distance", "jaccard_from_knn", "k_reciprocal_weights", "jaccard_from_weights",
           "half_list_length", "default_num_threads"]


def half_list_length(k1: int) -> int:
    """Entries of the half kNN list used for the expansion: ``int(np.around(k1 / 2)) + 1`` (SpCL)."""
    return int(np.around(k1 / 2.0)) + 1


def default_num_threads() -> int:
    """Worker threads for the numba kernels: ``INCLR_NUM_THREADS`` or the CPUs this process may use."""
    env = os.environ.get("INCLR_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


# ----------------------------------------------------------------------------------------------
# numba kernels: each handles rows [start, end) and either fills its rows of shared, preallocated
# outputs or returns its own CSR piece. They release the GIL, so a thread pool runs them in parallel.
# ----------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _reciprocal_kernel(idx, k, out, cnt, start, end):  # pragma: no cover - compiled
    for i in range(start, end):
        c = 0
        for a in range(k):
            j = idx[i, a]
            for b in range(k):
                if idx[j, b] == i:
                    out[i, c] = j
                    c += 1
                    break
        cnt[i] = c


@njit(cache=True, nogil=True)
def _sort_by_key(keys, vals, m):  # pragma: no cover - compiled
    """Shell sort of keys[:m] (int64, distinct) ascending, permuting vals[:m] alike.

    Hand-written because numba's np.sort/np.argsort take seconds to compile per process.
    """
    gap = 1
    while gap < m // 3:
        gap = 3 * gap + 1
    while gap > 0:
        for a in range(gap, m):
            kk = keys[a]
            vv = vals[a]
            b = a
            while b >= gap and keys[b - gap] > kk:
                keys[b] = keys[b - gap]
                vals[b] = vals[b - gap]
                b -= gap
            keys[b] = kk
            vals[b] = vv
        gap //= 3


@njit(cache=True, nogil=True)
def _grow(a, need):  # pragma: no cover - compiled
    """``a`` with room for ``need`` entries (doubling), contents kept; numba specialises per dtype."""
    if need <= a.shape[0]:
        return a
    b = np.empty(max(need, 2 * a.shape[0]), a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(cache=True, nogil=True)
def _append_sorted_row(cols, vals, nnz, keys, values, m):  # pragma: no cover - compiled
    """Sort the first ``m`` (key, value) pairs by key and append them to the growing CSR arrays."""
    _sort_by_key(keys, values, m)
    cols = _grow(cols, nnz + m)
    vals = _grow(vals, nnz + m)
    for a in range(m):
        cols[nnz + a] = keys[a]
        vals[nnz + a] = values[a]
    return cols, vals, nnz + m


@njit(cache=True, nogil=True, fastmath=True)
def _dot(feats, i, j):  # pragma: no cover - compiled
    """float64-accumulated dot product of two float32 rows (fastmath: vectorised reduction order)."""
    s = 0.0
    for t in range(feats.shape[1]):
        s += np.float64(feats[i, t]) * np.float64(feats[j, t])
    return s


@njit(cache=True, nogil=True)
def _expand_weights_kernel(feats, sims, idx, r_full, c_full, r_half, c_half, start, end):  # pragma: no cover
    n = idx.shape[0]
    k1 = idx.shape[1]
    in_r = np.full(n, -1, np.int64)  # in_r[j] == i  <=>  j in R(i, k1)
    in_e = np.full(n, -1, np.int64)  # in_e[j] == i  <=>  j already in E(i)
    in_l = np.full(n, -1, np.int64)  # in_l[j] == i  <=>  j in i's kNN list, at position pos_l[j]
    pos_l = np.zeros(n, np.int64)
    counts = np.zeros(end - start, np.int64)
    cols = np.empty(max(16, (end - start) * 48), np.int64)
    vals = np.empty(cols.shape[0], np.float64)
    ebuf = np.empty(n, np.int64)
    dist = np.empty(n, np.float64)
    nnz = 0
    two_thirds = 2.0 / 3.0
    for i in range(start, end):
        ne = 0
        for a in range(c_full[i]):
            j = r_full[i, a]
            in_r[j] = i
            if in_e[j] != i:
                in_e[j] = i
                ebuf[ne] = j
                ne += 1
        for a in range(c_full[i]):
            c = r_full[i, a]
            m = c_half[c]
            common = 0
            for b in range(m):
                if in_r[r_half[c, b]] == i:
                    common += 1
            if common > two_thirds * m:
                for b in range(m):
                    j = r_half[c, b]
                    if in_e[j] != i:
                        in_e[j] = i
                        ebuf[ne] = j
                        ne += 1
        _sort_by_key(ebuf, dist, ne)
        e = ebuf
        for a in range(k1):
            in_l[idx[i, a]] = i
            pos_l[idx[i, a]] = a
        dmin = np.inf
        for a in range(ne):
            j = e[a]
            if in_l[j] == i:
                s = np.float64(sims[i, pos_l[j]])
            else:
                s = _dot(feats, i, j)
            dist[a] = 2.0 - 2.0 * s
            if dist[a] < dmin:
                dmin = dist[a]
        cols = _grow(cols, nnz + ne)
        vals = _grow(vals, nnz + ne)
        tot = 0.0
        for a in range(ne):
            w = np.exp(-(dist[a] - dmin))
            vals[nnz + a] = w
            tot += w
        for a in range(ne):
            cols[nnz + a] = e[a]
            vals[nnz + a] /= tot
        nnz += ne
        counts[i - start] = ne
    return counts, cols[:nnz].copy(), vals[:nnz].copy()


@njit(cache=True, nogil=True)
def _query_expansion_kernel(vp, vi, vd, idx, k2, start, end):  # pragma: no cover - compiled
    n = idx.shape[0]
    acc = np.zeros(n, np.float64)
    stamp = np.full(n, -1, np.int64)
    touched = np.empty(n, np.int64)
    tval = np.empty(n, np.float64)
    counts = np.zeros(end - start, np.int64)
    cols = np.empty(max(16, (end - start) * 128), np.int64)
    vals = np.empty(cols.shape[0], np.float64)
    nnz = 0
    for i in range(start, end):
        nt = 0
        for a in range(k2):
            r = idx[i, a]
            for p in range(vp[r], vp[r + 1]):
                j = vi[p]
                if stamp[j] != i:
                    stamp[j] = i
                    acc[j] = 0.0
                    touched[nt] = j
                    nt += 1
                acc[j] += vd[p]
        for a in range(nt):
            tval[a] = acc[touched[a]] / k2
        cols, vals, nnz = _append_sorted_row(cols, vals, nnz, touched, tval, nt)
        counts[i - start] = nt
    return counts, cols[:nnz].copy(), vals[:nnz].copy()


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
        cols, vals, nnz = _append_sorted_row(cols, vals, nnz, kept_j, kept_d, nk)
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


# ----------------------------------------------------------------------------------------------
# Python glue: row blocks over a thread pool, CSR assembly
# ----------------------------------------------------------------------------------------------
def _blocks(n: int, n_threads: int) -> List[tuple]:
    size = max(64, -(-n // (8 * n_threads)))
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def _run(kernel: Callable, n: int, n_threads: int, args: Sequence[Any]) -> List[Any]:
    blocks = _blocks(n, n_threads)
    if n_threads <= 1 or len(blocks) == 1:
        return [kernel(*args, s, e) for s, e in blocks]
    # compile on the first block in this thread, then fan out
    first = kernel(*args, *blocks[0])
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        rest = list(pool.map(lambda b: kernel(*args, *b), blocks[1:]))
    return [first] + rest


def _assemble(pieces: List[Any], n: int, ncols: int) -> sp.csr_matrix:
    counts = np.concatenate([p[0] for p in pieces])
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.concatenate([p[1] for p in pieces])
    data = np.concatenate([p[2] for p in pieces])
    if indptr[-1] < np.iinfo(np.int32).max:
        indptr = indptr.astype(np.int32)
        indices = indices.astype(np.int32)
    m = sp.csr_matrix((data, indices, indptr), shape=(n, ncols))
    m.has_sorted_indices = True
    return m


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


def k_reciprocal_weights(feats: np.ndarray, sims: np.ndarray, idx: np.ndarray, k2: int,
                         n_threads: Optional[int] = None) -> sp.csr_matrix:
    """Steps 2-5 of the module docstring: the sparse (N x N) encoding V after query expansion.

    ``feats``: (N, D) L2-normalised float32; ``sims``/``idx``: (N, k1) kNN (self first) from
    :func:`knn_search`. Rows of the result sum to 1 (up to rounding).
    """
    n, k1 = idx.shape
    nt = n_threads or default_num_threads()
    half = min(half_list_length(k1), k1)
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    sims = np.ascontiguousarray(sims, dtype=np.float32)
    r_full = np.empty((n, k1), np.int64)
    c_full = np.empty(n, np.int64)
    _run(_reciprocal_kernel, n, nt, (idx, k1, r_full, c_full))
    r_half = np.empty((n, half), np.int64)
    c_half = np.empty(n, np.int64)
    idx_half = np.ascontiguousarray(idx[:, :half])
    _run(_reciprocal_kernel, n, nt, (idx_half, half, r_half, c_half))
    del idx_half
    v = _assemble(_run(_expand_weights_kernel, n, nt,
                       (feats, sims, idx, r_full, c_full, r_half, c_half)), n, n)
    del r_full, c_full, r_half, c_half
    if k2 > 1:
        v = _assemble(_run(_query_expansion_kernel, n, nt,
                           (v.indptr.astype(np.int64), v.indices.astype(np.int64), v.data, idx, int(k2))),
                      n, n)
    return v


def jaccard_from_weights(v: sp.csr_matrix, max_distance: float = 0.9,
                         n_threads: Optional[int] = None) -> sp.csr_matrix:
    """Step 6: ``d_J = 1 - S/(2 - S)``, ``S_ij = sum_k min(V_ik, V_jk)``, kept where ``d_J <= max_distance``."""
    n = v.shape[0]
    nt = n_threads or default_num_threads()
    vt = v.tocsc()  # column k -> the rows j with V_jk != 0 (the inverted index), sorted by j
    vt.sort_indices()
    args = (v.indptr.astype(np.int64), v.indices.astype(np.int64), v.data,
            vt.indptr.astype(np.int64), vt.indices.astype(np.int64), vt.data, float(max_distance))
    pieces = _run(_min_sum_kernel, n, nt, args)
    del vt, args
    upper = _assemble(pieces, n, n)
    del pieces
    indptr, indices, data = _mirror_upper_kernel(upper.indptr.astype(np.int64), upper.indices.astype(np.int64),
                                                 upper.data)
    del upper
    return _assemble([(np.diff(indptr), indices, data)], n, n)


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
