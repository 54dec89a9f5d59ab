"""Clusterers behind one seam, and cluster centroids (docs/design.md §4.3 step 3, §4.5).

A clusterer is a function ``f(space, params) -> labels`` from one :class:`FeatureSpace` (the
L2-normalised features, their kNN lists and, on demand, the sparse k-reciprocal Jaccard distance)
and the round's :class:`~inclr_fastreid.pseudo_labels.params.ClusterParams` to (N,) int64 labels
0..K-1 (-1 = outlier). A new clusterer is one function registered with :func:`clusterer` here;
its name becomes a value of ``INCLR.CLUSTER.METHOD``.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

import numpy as np
import scipy.sparse as sp

from .jaccard import jaccard_from_knn
from .knn import as_float32_features, l2_normalize

if TYPE_CHECKING:
    from .params import ClusterParams

__all__ = ["CLUSTERERS", "clusterer", "FeatureSpace", "cluster_dbscan", "cluster_kmeans", "kmeans_plus_plus", "mmt_eps",
           "relabel_by_first_occurrence", "cluster_centroids"]


class FeatureSpace:
    """One feature space of a clustering round (global, or a part)."""

    def __init__(self, name: str, features: np.ndarray, knn_sims: np.ndarray, knn_idx: np.ndarray,
                 params: "ClusterParams", n_threads: Optional[int] = None):
        self.name = name
        self.features = features  # (N, D) float32, L2-normalised (camera-standardised if asked)
        self.knn_sims, self.knn_idx = knn_sims, knn_idx  # (N, k) similarities / indices, self first
        self._params, self._n_threads = params, n_threads
        self._jaccard: Optional[sp.csr_matrix] = None
        self.jaccard_seconds = 0.0

    def jaccard(self) -> sp.csr_matrix:
        """Sparse k-reciprocal Jaccard distance (pairs within ``max_distance``), computed once."""
        if self._jaccard is None:
            t0 = time.perf_counter()
            p = self._params
            self._jaccard = jaccard_from_knn(self.features, self.knn_sims, self.knn_idx, int(p.k1), int(p.k2),
                                             p.max_distance, n_threads=self._n_threads)
            self.jaccard_seconds = time.perf_counter() - t0
        return self._jaccard


Clusterer = Callable[[FeatureSpace, "ClusterParams"], np.ndarray]
CLUSTERERS: Dict[str, Clusterer] = {}


def clusterer(name: str) -> Callable[[Clusterer], Clusterer]:
    """Register a clusterer under ``name`` (a value of ``INCLR.CLUSTER.METHOD``)."""
    def register(fn: Clusterer) -> Clusterer:
        CLUSTERERS[name] = fn
        return fn

    return register


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


@clusterer("dbscan")
def _dbscan_on_jaccard(space: FeatureSpace, params: "ClusterParams") -> np.ndarray:
    """DBSCAN on the sparse k-reciprocal Jaccard distance (SpCL / PPLR)."""
    return cluster_dbscan(space.jaccard(), params.eps, params.min_samples)


def mmt_eps(dist: sp.spmatrix, n: int, rho: float = 1.6e-3) -> float:
    """MMT-DBSCAN's eps (``examples/mmt_train_dbscan.py``): the mean of the smallest
    m = round(rho * N(N-1)/2) upper-triangle (i < j) distances of the full N x N Jaccard matrix.

    Exact from the sparse matrix, never densified: a pair the matrix does not store counts as
    distance 1 (a stored pair is <= ``max_distance`` <= 1), so only the stored upper-triangle
    entries are looked at and, when fewer than m are stored, the rest of the m smallest are 1.
    Stored zeros are distances 0 (MMT's ``np.nonzero`` on the dense triangle also drops such exact
    zeros; they need identical k-reciprocal supports and are counted here). m is NumPy-rounded
    as MMT's ``np.round``; m = 0 is refused naming ``INCLR.CLUSTER.RHO``.
    """
    if not sp.issparse(dist) or dist.shape != (n, n):
        raise ValueError(f"dist must be a sparse {n} x {n} matrix, got {type(dist).__name__} {getattr(dist, 'shape', None)}")
    if not (0 < rho <= 1):
        raise ValueError(f"INCLR.CLUSTER.RHO={rho}: must be in (0, 1]")
    m = int(np.round(rho * (n * (n - 1) // 2)))
    if m < 1:
        from ..errors import ConfigError

        raise ConfigError(f"INCLR.CLUSTER.RHO={rho} selects no pair of the N={n} target images "
                          "(round(RHO * N(N-1)/2) = 0); raise it or use INCLR.CLUSTER.EPS_RULE fixed")
    upper = sp.triu(dist, k=1, format="coo").data.astype(np.float64, copy=False)
    if upper.size > m:
        upper = np.partition(upper, m - 1)[:m]
    return float((upper.sum() + (m - upper.size) * 1.0) / m)


def kmeans_plus_plus(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Greedy k-means++ seeding, as scikit-learn's ``KMeans`` (MMT's) initialises: each next centre is,
    of 2 + floor(ln k) samples drawn with probability proportional to their squared distance to the
    nearest centre so far, the one that leaves the smallest total squared distance.
    ``x``: (N, D) float32 unit rows; returns (k, D) float32 centres (rows of ``x``)."""
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    trials = 2 + int(np.log(k))
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = rng.integers(n)
    d2 = np.maximum(2.0 - 2.0 * (x @ x[chosen[0]]).astype(np.float64), 0.0)
    for j in range(1, k):
        total = d2.sum()
        if total <= 0:  # every sample sits on a centre already
            chosen[j:] = rng.integers(n, size=k - j)
            break
        cand = rng.choice(n, size=trials, p=d2 / total)
        cand_d2 = np.minimum(d2[:, None], np.maximum(2.0 - 2.0 * (x @ x[cand].T).astype(np.float64), 0.0))
        best = int(np.argmin(cand_d2.sum(axis=0)))
        chosen[j], d2 = cand[best], cand_d2[:, best]
    return np.ascontiguousarray(x[chosen])


def cluster_kmeans(features: np.ndarray, k: int, *, seed: int = 1, niter: int = 100) -> np.ndarray:
    """faiss k-means (Euclidean, on unit vectors) into exactly ``k`` clusters; (N,) int64 labels 0..k-1
    by first occurrence, no outliers.

    MMT (``examples/mmt_train_kmeans.py``) runs scikit-learn's ``KMeans`` (k-means++ init, up to 300
    iterations, stop at tol 1e-4); here the same greedy k-means++ seeding (:func:`kmeans_plus_plus`)
    instead of faiss's own start (k random samples), then Lloyd iterations in faiss for a fixed
    ``niter`` (100, ours: faiss has no convergence test). k-means is a local method: the seeding
    decides which minimum is found.
    ``features``: (N, D), L2-normalised here. Every sample takes part (no faiss subsampling).
    Fixed ``seed`` -> the same labels on the same machine. A faiss GPU build with a visible GPU
    runs on the GPU (``faiss.get_num_gpus() > 0``), otherwise the CPU. A cluster left empty is
    split by faiss during training, so all ``k`` ids occur; should the final assignment still leave
    one empty (many identical features), the labels keep the clusters that have members, with a
    warning. N < k is refused naming ``INCLR.CLUSTER.NUM_CLUSTERS``.
    """
    import faiss

    x = np.ascontiguousarray(l2_normalize(as_float32_features(features)))
    n = x.shape[0]
    if int(k) != k or k < 1:
        raise ValueError(f"INCLR.CLUSTER.NUM_CLUSTERS={k}: k-means needs a positive number of clusters")
    if n < k:
        from ..errors import ConfigError

        raise ConfigError(f"INCLR.CLUSTER.NUM_CLUSTERS={k} exceeds the N={n} target images; lower it")
    km = faiss.Kmeans(x.shape[1], int(k), niter=int(niter), seed=int(seed), max_points_per_centroid=max(n, 1),
                      gpu=faiss.get_num_gpus() > 0, verbose=False)
    km.train(x, init_centroids=kmeans_plus_plus(x, int(k), seed))
    _, assign = km.index.search(x, 1)
    labels = relabel_by_first_occurrence(assign[:, 0].astype(np.int64))
    if labels.max() + 1 != k:
        logging.getLogger(__name__).warning("k-means left %d of INCLR.CLUSTER.NUM_CLUSTERS=%d clusters empty "
                                            "(many identical features?)", k - labels.max() - 1, k)
    return labels


@clusterer("kmeans")
def _kmeans_on_features(space: FeatureSpace, params: "ClusterParams") -> np.ndarray:
    """k-means with K = ``INCLR.CLUSTER.NUM_CLUSTERS`` on the normalised features (MMT / P2LR); every
    space (global and each part) with the same K."""
    return cluster_kmeans(space.features, params.num_clusters, seed=params.seed)


def cluster_centroids(features: Any, labels: Any) -> np.ndarray:
    """(K, D) float32 L2-normalised mean feature of each cluster 0..K-1; outliers (-1) excluded.

    Rows are the IGMO dynamic classifier (docs/design.md §4.5, Eq. 4-5) and the classifier initialisation.
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
