"""Exact k-nearest-neighbour search on L2-normalised features (docs/design.md §4.3 step 2).

On unit vectors, ranking by inner product equals ranking by Euclidean distance
(||a - b||^2 = 2 - 2 a.b), so one search serves both. CPU: ``faiss.knn`` with the L2 metric, the
very search SpCL's ``faiss_rerank`` runs (``IndexFlatL2``), so that near-ties among float32
distances are broken the same way and the k-reciprocal sets come out identical (an inner-product
search orders ~1e-7 near-ties differently, which moved a few Jaccard distances by ~0.02 at
N=12,936); blocked BLAS, no index copy of the data. CUDA tensors: chunked ``torch`` matmul +
``topk`` on the GPU. The query point
itself is always the first neighbour when ``exclude_self=False`` (as in the k-reciprocal encoding
of Zhong et al., where ``initial_rank[i, 0] == i``), whatever ties or duplicate features do.
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np

__all__ = ["as_float32_features", "l2_normalize", "l2_normalize_torch", "knn_search", "is_cuda_tensor"]


def is_cuda_tensor(x: Any) -> bool:
    """True when ``x`` is a torch tensor living on a CUDA device (torch is not imported otherwise)."""
    return type(x).__module__.startswith("torch") and getattr(x, "is_cuda", False)


def as_float32_features(x: Any, name: str = "features") -> np.ndarray:
    """Validate an (N, D) feature array (numpy or torch, any device) and return C-contiguous float32 numpy."""
    if type(x).__module__.startswith("torch"):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) array, got shape {x.shape}; "
                         "stack per-image feature vectors into one matrix")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise ValueError(f"{name} has NaN/inf values in {bad} rows; check the feature extractor "
                         "(e.g. fp16 overflow) before clustering")
    return x


def l2_normalize(x: np.ndarray, eps: float = 1e-12, tol: float = 1e-6) -> np.ndarray:
    """Row-wise L2 normalisation of a float32 (N, D) array; zero rows stay zero.

    Returns ``x`` itself (no copy) when every row norm is already within ``tol`` of 1, so
    normalised teacher features are never duplicated in memory. Never writes into ``x``.
    """
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    if x.dtype == np.float32 and np.all(np.abs(norms - 1.0) <= tol):
        return x
    return (x / np.maximum(norms, eps)[:, None].astype(np.float32)).astype(np.float32, copy=False)


def l2_normalize_torch(x: Any, eps: float = 1e-12, tol: float = 1e-6) -> Any:
    """:func:`l2_normalize` for a torch tensor on its device (float32; NaN/inf refused as
    :func:`as_float32_features` does); returns ``x`` itself when its rows are unit already."""
    import torch

    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features must be a non-empty 2-D (N, D) tensor, got shape {tuple(x.shape)}")
    x = x.detach().float()
    if not bool(torch.isfinite(x).all()):
        raise ValueError("features has NaN/inf values; check the feature extractor (e.g. fp16 overflow) "
                         "before clustering")
    norms = torch.linalg.vector_norm(x.double(), dim=1)
    if bool(((norms - 1.0).abs() <= tol).all()):
        return x
    return x / norms.clamp(min=eps).float()[:, None]


def _self_first(sims: np.ndarray, idx: np.ndarray, feats: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Reorder each row so that the query itself is entry 0 (inserted if ties pushed it out)."""
    n, k = idx.shape
    rows = np.arange(n)
    bad = idx[:, 0] != rows
    if not bad.any():
        return sims, idx
    b = np.flatnonzero(bad)
    is_self = idx[b] == b[:, None]
    has = is_self.any(axis=1)
    # rows where self appears later: stable sort puts the self entry first, keeps the others' order
    hb = b[has]
    if hb.size:
        order = np.argsort(~is_self[has], axis=1, kind="stable")
        idx[hb] = np.take_along_axis(idx[hb], order, axis=1)
        sims[hb] = np.take_along_axis(sims[hb], order, axis=1)
    # rows where self is missing (more than k exact duplicates): prepend self, drop the last entry
    mb = b[~has]
    if mb.size:
        idx[mb, 1:] = idx[mb, :-1].copy()
        sims[mb, 1:] = sims[mb, :-1].copy()
        idx[mb, 0] = mb
        sims[mb, 0] = np.einsum("ij,ij->i", feats[mb], feats[mb])
    return sims, idx


def _knn_torch_cuda(x: Any, k: int, chunk_size: int) -> Tuple[np.ndarray, np.ndarray]:
    import torch

    x = x.detach().float()
    x = torch.nn.functional.normalize(x, dim=1)
    n = x.shape[0]
    sims_out = np.empty((n, k), dtype=np.float32)
    idx_out = np.empty((n, k), dtype=np.int64)
    prec = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # exact fp32 products: no TF32 rounding of the ranks
    try:
        _knn_torch_chunks(x, k, chunk_size, sims_out, idx_out)
    finally:
        torch.set_float32_matmul_precision(prec)
    return sims_out, idx_out


def _knn_torch_chunks(x: Any, k: int, chunk_size: int, sims_out: np.ndarray, idx_out: np.ndarray) -> None:
    import torch

    n = x.shape[0]
    with torch.no_grad():
        for s in range(0, n, chunk_size):
            e = min(n, s + chunk_size)
            sim = x[s:e] @ x.T
            r = torch.arange(e - s, device=x.device)
            self_sim = sim[r, r + s].clone()
            sim[r, r + s] = float("inf")  # the query itself ranks first
            val, ind = torch.topk(sim, k, dim=1, largest=True, sorted=True)
            val[:, 0] = self_sim
            sims_out[s:e] = val.cpu().numpy()
            idx_out[s:e] = ind.cpu().numpy()
            del sim, val, ind


def knn_search(features: Any, k: int, *, exclude_self: bool = False, normalize: bool = True,
               chunk_size: int = 4096) -> Tuple[np.ndarray, np.ndarray]:
    """Exact kNN by cosine similarity: returns ``(sims, idx)``, both (N, k), nearest first.

    ``exclude_self=False``: entry 0 of every row is the query itself (k entries in all, as SpCL's
    ``initial_rank``). ``exclude_self=True``: k nearest *other* points (PPLR's ranked list).
    Euclidean distances follow as ``2 - 2 * sims``. CUDA tensors are searched on their device.
    """
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    cuda = is_cuda_tensor(features)
    if cuda:
        if features.ndim != 2:
            raise ValueError(f"features must be a 2-D (N, D) tensor, got shape {tuple(features.shape)}")
        n = int(features.shape[0])
        if not bool(features.isfinite().all()):
            raise ValueError("features has NaN/inf values; check the feature extractor before clustering")
    else:
        features = as_float32_features(features)
        n = features.shape[0]
    kk = k + 1 if exclude_self else k
    if kk > n:
        raise ValueError(f"k={k} needs at least {kk} samples (self {'excluded' if exclude_self else 'included'}), "
                         f"got N={n}; lower k")
    if cuda:
        sims, idx = _knn_torch_cuda(features, kk, chunk_size)
    else:
        import faiss

        x = l2_normalize(features) if normalize else features
        sq, idx = faiss.knn(x, x, kk, metric=faiss.METRIC_L2)
        sims = (1.0 - 0.5 * sq).astype(np.float32)  # cosine of unit vectors from ||a - b||^2
        del sq
        sims, idx = _self_first(sims, idx.astype(np.int64, copy=False), x)
    if exclude_self:
        return np.ascontiguousarray(sims[:, 1:]), np.ascontiguousarray(idx[:, 1:])
    return sims, idx
