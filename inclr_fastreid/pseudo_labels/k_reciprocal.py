"""Steps 2-5 of the sparse k-reciprocal Jaccard distance (:mod:`.jaccard`, whose docstring states them):
the k-reciprocal sets, their expansion and the softmax weights V, then the query expansion, as a sparse
(N x N) CSR matrix. numba kernels over row blocks (:mod:`.csr_blocks`), nothing N x N.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.sparse as sp
from numba import njit

from .csr_blocks import append_sorted_row, assemble_csr, default_num_threads, grow, run_row_blocks, sort_by_key

__all__ = ["half_list_length", "k_reciprocal_weights"]


def half_list_length(k1: int) -> int:
    """Entries of the half kNN list used for the expansion: ``int(np.around(k1 / 2)) + 1`` (SpCL)."""
    return int(np.around(k1 / 2.0)) + 1


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
        sort_by_key(ebuf, dist, ne)
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
        cols = grow(cols, nnz + ne)
        vals = grow(vals, nnz + ne)
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
        cols, vals, nnz = append_sorted_row(cols, vals, nnz, touched, tval, nt)
        counts[i - start] = nt
    return counts, cols[:nnz].copy(), vals[:nnz].copy()


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
    run_row_blocks(_reciprocal_kernel, n, nt, (idx, k1, r_full, c_full))
    r_half = np.empty((n, half), np.int64)
    c_half = np.empty(n, np.int64)
    idx_half = np.ascontiguousarray(idx[:, :half])
    run_row_blocks(_reciprocal_kernel, n, nt, (idx_half, half, r_half, c_half))
    del idx_half
    v = assemble_csr(run_row_blocks(_expand_weights_kernel, n, nt,
                       (feats, sims, idx, r_full, c_full, r_half, c_half)), n, n)
    del r_full, c_full, r_half, c_half
    if k2 > 1:
        v = assemble_csr(run_row_blocks(_query_expansion_kernel, n, nt,
                           (v.indptr.astype(np.int64), v.indices.astype(np.int64), v.data, idx, int(k2))),
                      n, n)
    return v
