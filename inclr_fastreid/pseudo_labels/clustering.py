"""DBSCAN on the sparse Jaccard distance and cluster centroids (DESIGN.md §4.3 step 3, §4.5)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import scipy.sparse as sp

from .knn import as_float32_features, l2_normalize

__all__ = ["cluster_dbscan", "relabel_by_first_occurrence", "cluster_centroids"]


def relabel_by_first_occurrence(labels: Any) -> np.ndarray:
    """Map cluster ids to 0..K-1 in order of each cluster's first sample; negatives become -1."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    out = np.full(labels.shape[0], -1, dtype=np.int64)
    valid = labels >= 0
    if not valid.any():
        return out
    uniq, first, inv = np.unique(labels[valid], return_index=True, return_inverse=True)
    rank = np.empty(uniq.shape[0], dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(uniq.shape[0])
    out[valid] = rank[inv]
    return out


def cluster_dbscan(dist: sp.spmatrix, eps: float = 0.6, min_samples: int = 4,
                   n_jobs: Optional[int] = None) -> np.ndarray:
    """DBSCAN (scikit-learn, ``metric="precomputed"``) on a sparse distance matrix; (N,) int64, -1 = outlier.

    Every *stored* entry with value <= eps is a neighbour, explicit zeros included (identical
    features); a missing entry is "farther than the cutoff", so ``eps`` must not exceed the
    ``max_distance`` the matrix was built with. The point itself counts towards ``min_samples``
    (scikit-learn's convention, as in SpCL/PPLR on the dense matrix). Clusters are renumbered
    0..K-1 by first occurrence, so the result does not depend on DBSCAN's internal visiting order.
    """
    from sklearn.cluster import DBSCAN

    if not sp.issparse(dist):
        raise TypeError(f"dist must be a scipy sparse matrix (see compute_jaccard_distance), got {type(dist)}")
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"dist must be square (N x N), got shape {dist.shape}")
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite number, got {eps}")
    if int(min_samples) != min_samples or min_samples < 1:
        raise ValueError(f"min_samples must be a positive integer, got {min_samples}")
    dist = sp.csr_matrix(dist)  # a copy only when the format differs; explicit zeros are kept
    if dist.nnz and (not np.all(np.isfinite(dist.data)) or dist.data.min() < 0):
        raise ValueError("dist holds negative or non-finite distances")
    labels = DBSCAN(eps=float(eps), min_samples=int(min_samples), metric="precomputed",
                    n_jobs=n_jobs).fit_predict(dist)
    return relabel_by_first_occurrence(labels)


def cluster_centroids(features: Any, labels: Any) -> np.ndarray:
    """(K, D) float32 L2-normalised mean feature of each cluster 0..K-1; outliers (-1) excluded.

    Rows are the IGMO dynamic classifier (DESIGN §4.5, Eq. 4-5) and the classifier initialisation.
    Input rows are L2-normalised first (as the features the clustering saw). ``K = labels.max()+1``;
    every id in 0..K-1 must have a member (use :func:`relabel_by_first_occurrence`).
    """
    x = l2_normalize(as_float32_features(features))
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
        raise ValueError(f"labels must be 1-D with one entry per feature row ({x.shape[0]}), got {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    keep = labels >= 0
    k = int(labels.max()) + 1 if keep.any() else 0
    if k == 0:
        return np.zeros((0, x.shape[1]), dtype=np.float32)
    sizes = np.bincount(labels[keep], minlength=k)
    if (sizes == 0).any():
        raise ValueError(f"cluster ids {np.flatnonzero(sizes == 0)[:5].tolist()} have no member; "
                         "relabel to 0..K-1 first (relabel_by_first_occurrence)")
    rows = labels[keep]
    cols = np.flatnonzero(keep)
    member = sp.csr_matrix((np.ones(rows.shape[0], np.float32), (rows, cols)), shape=(k, x.shape[0]))
    sums = np.asarray(member @ x, dtype=np.float32)
    return l2_normalize(sums / sizes[:, None].astype(np.float32))
