"""Clusterers behind one seam, and cluster centroids (docs/design.md §4.3 step 3, §4.5).

A clusterer is a function ``f(space, params) -> labels`` from one :class:`FeatureSpace` (the
L2-normalised features, their kNN lists and, on demand, the sparse k-reciprocal Jaccard distance)
and the round's :class:`~inclr_fastreid.pseudo_labels.params.ClusterParams` to (N,) int64 labels
0..K-1 (-1 = outlier). A new clusterer is one function registered with :func:`clusterer` here;
its name becomes a value of ``INCLR.CLUSTER.METHOD`` (:data:`~.registries.CLUSTERERS`).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

import numpy as np
import scipy.sparse as sp

from .jaccard import jaccard_from_knn
from .kmeans import MAX_ITER, TOL, kmeans
from .knn import as_float32_features, is_cuda_tensor, l2_normalize, l2_normalize_torch
from .registries import CLUSTERERS

if TYPE_CHECKING:
    from .params import ClusterParams

__all__ = ["CLUSTERERS", "clusterer", "FeatureSpace", "cluster_dbscan", "cluster_kmeans", "mmt_eps",
           "relabel_by_first_occurrence", "cluster_centroids"]


class FeatureSpace:
    """One feature space of a clustering round (global, or a part)."""

    def __init__(self, name: str, features: Optional[np.ndarray], knn_sims: np.ndarray, knn_idx: np.ndarray,
                 params: "ClusterParams", n_threads: Optional[int] = None, device_features: Any = None):
        if features is None and device_features is None:
            raise ValueError("FeatureSpace needs features (numpy) or device_features (a torch tensor)")
        self.name = name
        self._features = features
        self.device_features = device_features  # the same as a tensor on the GPU they came from; None: CPU only
        self.knn_sims, self.knn_idx = knn_sims, knn_idx  # (N, k) similarities / indices, self first
        self._params, self._n_threads = params, n_threads
        self._jaccard: Optional[sp.csr_matrix] = None
        self.jaccard_seconds = 0.0

    @property
    def features(self) -> np.ndarray:
        """(N, D) float32 numpy, L2-normalised (camera-standardised if asked); copied from the GPU on first use."""
        if self._features is None:
            if self.device_features is None:
                raise ValueError(f"the features of space {self.name!r} were released (release_features)")
            self._features = self.device_features.float().cpu().numpy()
        return self._features

    def release_features(self) -> None:
        """Let the features and kNN lists go once the Jaccard distance is built: DBSCAN and the eps rules read
        only the distance, and a round holds every clustered space until its eps is chosen."""
        if self._jaccard is None:
            raise ValueError(f"space {self.name!r}: build the Jaccard distance before releasing its features")
        self._features = self.device_features = self.knn_sims = self.knn_idx = None

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


def clusterer(name: str) -> Callable[[Clusterer], Clusterer]:
    """Register a clusterer under ``name`` (a value of ``INCLR.CLUSTER.METHOD``)."""
    return CLUSTERERS.register(name)


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


def cluster_kmeans(features: Any, k: int, *, seed: int = 1, max_iter: int = MAX_ITER, tol: float = TOL) -> np.ndarray:
    """k-means (Euclidean, on unit vectors) into exactly ``k`` clusters; (N,) int64 labels 0..k-1 by first
    occurrence, no outliers.

    As MMT (``examples/mmt_train_kmeans.py``: scikit-learn's ``KMeans``): greedy k-means++ seeding, then
    Lloyd iterations until the labels repeat or the centres move less than scikit-learn's ``tol``
    (1e-4 x the data's mean variance), at most ``max_iter`` (:mod:`.kmeans`). ``features``: (N, D) numpy
    array or torch tensor, L2-normalised here; a CUDA tensor is clustered on its GPU, anything else on the
    CPU (torch). Every sample takes part. Fixed ``seed`` -> the same labels on the same machine. An empty
    cluster takes the sample farthest from its centre (scikit-learn), so all ``k`` ids occur; should the
    final assignment still leave one empty (many identical features), the labels keep the clusters that
    have members, with a warning. N < k is refused naming ``INCLR.CLUSTER.NUM_CLUSTERS``.
    """
    n = int(features.shape[0]) if hasattr(features, "shape") else len(features)
    if int(k) != k or k < 1:
        raise ValueError(f"INCLR.CLUSTER.NUM_CLUSTERS={k}: k-means needs a positive number of clusters")
    if n < k:
        from ..errors import ConfigError

        raise ConfigError(f"INCLR.CLUSTER.NUM_CLUSTERS={k} exceeds the N={n} target images; lower it")
    x = l2_normalize_torch(features) if is_cuda_tensor(features) else l2_normalize(as_float32_features(features))
    labels = relabel_by_first_occurrence(kmeans(x, int(k), seed=int(seed), max_iter=max_iter, tol=tol).labels)
    if labels.max() + 1 != k:
        logging.getLogger(__name__).warning("k-means left %d of INCLR.CLUSTER.NUM_CLUSTERS=%d clusters empty "
                                            "(many identical features?)", k - labels.max() - 1, k)
    return labels


@clusterer("kmeans")
def _kmeans_on_features(space: FeatureSpace, params: "ClusterParams") -> np.ndarray:
    """k-means with K = ``INCLR.CLUSTER.NUM_CLUSTERS`` on the normalised features (MMT / P2LR); every
    space (global and each part) with the same K."""
    feats = space.features if space.device_features is None else space.device_features
    return cluster_kmeans(feats, params.num_clusters, seed=params.seed)


def cluster_centroids(features: Any, labels: Any) -> np.ndarray:
    """(K, D) float32 L2-normalised mean feature of each cluster 0..K-1; outliers (-1) excluded.

    Rows are the IGMO dynamic classifier (docs/design.md §4.5, Eq. 4-5) and the classifier initialisation.
    Input rows are L2-normalised first (as the features the clustering saw). ``K = labels.max()+1``;
    every id in 0..K-1 must have a member (use :func:`relabel_by_first_occurrence`).
    """
    if is_cuda_tensor(features):  # sum on the GPU, hand back (K, D) numpy
        return _cluster_centroids_torch(l2_normalize_torch(features), labels)
    x = l2_normalize(as_float32_features(features))
    labels, keep, sizes = _checked_clusters(labels, x.shape[0])
    k = sizes.shape[0]
    if k == 0:
        return np.zeros((0, x.shape[1]), dtype=np.float32)
    rows = labels[keep]
    cols = np.flatnonzero(keep)
    member = sp.csr_matrix((np.ones(rows.shape[0], np.float32), (rows, cols)), shape=(k, x.shape[0]))
    sums = np.asarray(member @ x, dtype=np.float32)
    return l2_normalize(sums / sizes[:, None].astype(np.float32))


def _checked_clusters(labels: Any, n: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, members mask, (K,) sizes) of cluster labels for ``n`` rows: 1-D integers, -1 = outlier, every
    id 0..K-1 with a member (else a ValueError saying what to do)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must be 1-D with one entry per feature row ({n}), got {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    keep = labels >= 0
    k = int(labels.max()) + 1 if keep.any() else 0
    sizes = np.bincount(labels[keep], minlength=k) if k else np.zeros(0, dtype=np.int64)
    if (sizes == 0).any():
        raise ValueError(f"cluster ids {np.flatnonzero(sizes == 0)[:5].tolist()} have no member; "
                         "relabel to 0..K-1 first (relabel_by_first_occurrence)")
    return labels, keep, sizes


def _cluster_centroids_torch(x: Any, labels: Any) -> np.ndarray:
    """:func:`cluster_centroids` of unit rows ``x`` (a torch tensor) summed on their device."""
    import torch

    labels, keep, sizes = _checked_clusters(labels, x.shape[0])
    k = sizes.shape[0]
    if k == 0:
        return np.zeros((0, x.shape[1]), dtype=np.float32)
    rows = torch.as_tensor(np.flatnonzero(keep), device=x.device)
    ids = torch.as_tensor(labels[keep], device=x.device)
    sums = torch.zeros(k, x.shape[1], dtype=torch.float32, device=x.device).index_add_(0, ids, x[rows])
    return l2_normalize(sums.cpu().numpy() / sizes[:, None].astype(np.float32))
