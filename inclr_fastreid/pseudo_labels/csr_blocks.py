"""Shared machinery of the sparse Jaccard distance (:mod:`.k_reciprocal`, :mod:`.jaccard`): numba row kernels
run over blocks of rows in a thread pool, each returning its own CSR piece, and the pieces assembled into one
matrix; the kernels build their rows with :func:`append_sorted_row`.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, List, Sequence

import numpy as np
import scipy.sparse as sp
from numba import njit

__all__ = ["default_num_threads", "sort_by_key", "grow", "append_sorted_row", "row_blocks", "run_row_blocks",
           "assemble_csr"]


def default_num_threads() -> int:
    """Worker threads for the numba kernels: ``INCLR_NUM_THREADS`` or the CPUs this process may use."""
    env = os.environ.get("INCLR_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


@njit(cache=True, nogil=True)
def sort_by_key(keys, vals, m):  # pragma: no cover - compiled
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
def grow(a, need):  # pragma: no cover - compiled
    """``a`` with room for ``need`` entries (doubling), contents kept; numba specialises per dtype."""
    if need <= a.shape[0]:
        return a
    b = np.empty(max(need, 2 * a.shape[0]), a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(cache=True, nogil=True)
def append_sorted_row(cols, vals, nnz, keys, values, m):  # pragma: no cover - compiled
    """Sort the first ``m`` (key, value) pairs by key and append them to the growing CSR arrays."""
    sort_by_key(keys, values, m)
    cols = grow(cols, nnz + m)
    vals = grow(vals, nnz + m)
    for a in range(m):
        cols[nnz + a] = keys[a]
        vals[nnz + a] = values[a]
    return cols, vals, nnz + m


# ----------------------------------------------------------------------------------------------
# Python glue: row blocks over a thread pool, CSR assembly
# ----------------------------------------------------------------------------------------------
def row_blocks(n: int, n_threads: int) -> List[tuple]:
    size = max(64, -(-n // (8 * n_threads)))
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def run_row_blocks(kernel: Callable, n: int, n_threads: int, args: Sequence[Any]) -> List[Any]:
    blocks = row_blocks(n, n_threads)
    if n_threads <= 1 or len(blocks) == 1:
        return [kernel(*args, s, e) for s, e in blocks]
    # compile on the first block in this thread, then fan out
    first = kernel(*args, *blocks[0])
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        rest = list(pool.map(lambda b: kernel(*args, *b), blocks[1:]))
    return [first] + rest


def assemble_csr(pieces: List[Any], n: int, ncols: int) -> sp.csr_matrix:
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
