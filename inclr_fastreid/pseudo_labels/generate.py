"""One call from teacher features to this epoch's pseudo labels (DESIGN.md §4.3-4.4).

Pure function, no FastReID state: the PseudoLabelHook extracts features, calls
:func:`generate_pseudo_labels` and swaps the train set / classifier rows.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .clustering import cluster_centroids, cluster_dbscan
from .jaccard import jaccard_from_knn
from .knn import as_float32_features, is_cuda_tensor, knn_search, l2_normalize
from .lgmr import cross_agreement, refine_global_labels

__all__ = ["PseudoLabels", "camera_normalize", "generate_pseudo_labels"]


@dataclass
class PseudoLabels:
    """Result of one clustering round. ``labels``: (N,) int64, -1 = outlier (sits out the epoch)."""

    labels: np.ndarray
    num_classes: int
    agreement: np.ndarray  # (N, P) float32 cross-agreement C_p(i); ones when LGMR is off
    centroids: Dict[str, np.ndarray]  # "global", "part1".."partP": (K, D) L2-normalised, from `labels`
    part_labels: List[np.ndarray]  # DBSCAN labels of each part space; [] when LGMR is off
    labels_before_lgmr: np.ndarray  # global DBSCAN labels before refinement
    # wall seconds: knn_<space>, jaccard_<space>, dbscan_<space> (space = global, part1..),
    # lgmr, centroids, total
    timings: Dict[str, float] = field(default_factory=dict)

    @property
    def num_outliers(self) -> int:
        return int((self.labels < 0).sum())


def camera_normalize(features: np.ndarray, camids: Any) -> np.ndarray:
    """Standardise L2-normalised features per camera (subtract the camera mean, divide by its per-dim std), re-normalise.

    Removes camera-specific offsets before the kNN search (beyond the paper; ``INCLR.CLUSTER.CAMERA_NORM``).
    Dimensions with zero spread in a camera (e.g. a one-image camera) are only centred.
    """
    x = l2_normalize(as_float32_features(features))
    cams = np.asarray(camids)
    if cams.ndim != 1 or cams.shape[0] != x.shape[0]:
        raise ValueError(f"camids must be 1-D with one entry per feature row ({x.shape[0]}), got {cams.shape}")
    out = np.empty_like(x)
    for c in np.unique(cams):
        m = cams == c
        xc = x[m]
        mu = xc.mean(axis=0, dtype=np.float64)
        sd = xc.std(axis=0, dtype=np.float64)
        sd = np.where(sd > 1e-6, sd, 1.0)
        out[m] = ((xc - mu) / sd).astype(np.float32)
    return l2_normalize(out)


def _num_rows(feats: Any, name: str) -> int:
    shape = tuple(getattr(feats, "shape", np.shape(feats)))
    if len(shape) != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) array, got shape {shape}")
    return int(shape[0])


def generate_pseudo_labels(global_feats: Any, part_feats: Sequence[Any], *, eps: float = 0.6,
                           min_samples: int = 4, k1: int = 30, k2: int = 6, max_distance: float = 0.9,
                           lgmr_enabled: bool = True, lgmr_k: int = 20, min_agreement: float = 0.0,
                           camids: Any = None, camera_norm: bool = False,
                           n_threads: Optional[int] = None) -> PseudoLabels:
    """Cluster the global space (Jaccard + DBSCAN) and, with LGMR, each part space; refine the global labels.

    Steps: (camera standardisation) -> per space exact kNN (k = max(k1, lgmr_k + 1), shared by the
    Jaccard distance and LGMR's neighbour overlap) -> sparse k-reciprocal Jaccard -> DBSCAN ->
    cross-agreement C (N, P) -> refine_global_labels -> centroids of the final labels in every space
    (from the L2-normalised input features, not the camera-standardised ones: they are the classifier
    rows for the students' features). Features: (N, D) numpy arrays or torch tensors (CUDA tensors
    are searched on the GPU). Spaces are processed one at a time; already-normalised float32 input
    is not copied.
    """
    t_all = time.perf_counter()
    timings: Dict[str, float] = {}
    if max_distance < eps:
        raise ValueError(f"max_distance={max_distance} < eps={eps}: DBSCAN would miss neighbours; "
                         "set INCLR.CLUSTER.MAX_DISTANCE >= INCLR.CLUSTER.EPS")
    if camera_norm and camids is None:
        raise ValueError("camera_norm=True needs camids (one camera id per image)")
    n = _num_rows(global_feats, "global_feats")
    for i, p in enumerate(part_feats):
        if _num_rows(p, f"part_feats[{i}]") != n:
            raise ValueError(f"part_feats[{i}] has {_num_rows(p, '')} rows but the global features have {n}")
    if lgmr_enabled and not part_feats:
        raise ValueError("LGMR needs part features (part_feats is empty); pass them or set lgmr_enabled=False")
    if camera_norm and np.shape(camids) != (n,):
        raise ValueError(f"camids must have one entry per image ({n}), got shape {np.shape(camids)}")
    k_search = max(int(k1), int(lgmr_k) + 1) if lgmr_enabled else int(k1)
    if k_search > n:
        from ..config import ConfigError  # a ValueError too

        raise ConfigError(f"INCLR.CLUSTER.K1={k1}" + (f" / INCLR.LGMR.K={lgmr_k}" if lgmr_enabled else "")
                          + f" need(s) more than the N={n} target images; lower them")

    spaces = [("global", global_feats)] + [(f"part{i + 1}", p) for i, p in enumerate(part_feats)]
    labels_by_space: Dict[str, np.ndarray] = {}
    knn_others: Dict[str, np.ndarray] = {}
    for name, raw in spaces if lgmr_enabled else spaces[:1]:
        t0 = time.perf_counter()
        cpu_feats = l2_normalize(as_float32_features(raw, name))
        if camera_norm:
            cpu_feats = camera_normalize(cpu_feats, camids)
        search_feats: Any = cpu_feats
        if is_cuda_tensor(raw):  # search on the GPU the features live on
            import torch

            search_feats = torch.from_numpy(cpu_feats).to(raw.device) if camera_norm else raw
        sims, idx = knn_search(search_feats, k_search, normalize=is_cuda_tensor(search_feats))
        del search_feats
        t1 = time.perf_counter()
        dist = jaccard_from_knn(cpu_feats, sims, idx, int(k1), int(k2), max_distance, n_threads=n_threads)
        t2 = time.perf_counter()
        labels_by_space[name] = cluster_dbscan(dist, eps, min_samples)
        t3 = time.perf_counter()
        if lgmr_enabled:
            knn_others[name] = np.ascontiguousarray(idx[:, 1:int(lgmr_k) + 1])
        del dist, sims, idx, cpu_feats
        timings[f"knn_{name}"] = t1 - t0
        timings[f"jaccard_{name}"] = t2 - t1
        timings[f"dbscan_{name}"] = t3 - t2

    before = labels_by_space["global"]
    t0 = time.perf_counter()
    if lgmr_enabled:
        part_labels = [labels_by_space[f"part{i + 1}"] for i in range(len(part_feats))]
        agreement = cross_agreement(global_feats, part_feats, before, part_labels, int(lgmr_k),
                                    global_knn=knn_others["global"],
                                    part_knn_list=[knn_others[f"part{i + 1}"] for i in range(len(part_feats))])
        labels = refine_global_labels(before, agreement, min_agreement)
    else:
        part_labels = []
        agreement = np.ones((n, len(part_feats)), dtype=np.float32)
        labels = before.copy()
    timings["lgmr"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    centroids = {name: cluster_centroids(raw, labels) for name, raw in spaces}
    timings["centroids"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    num_classes = int(labels.max()) + 1 if (labels >= 0).any() else 0
    return PseudoLabels(labels=labels, num_classes=num_classes, agreement=agreement, centroids=centroids,
                        part_labels=part_labels, labels_before_lgmr=before, timings=timings)
