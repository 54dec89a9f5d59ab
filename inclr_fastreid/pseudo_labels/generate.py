"""One call from teacher features to this epoch's pseudo labels (docs/design.md §4.3-4.4).

Pure function, no FastReID state: the PseudoLabelHook extracts features, calls
:func:`generate_pseudo_labels` and swaps the train set / classifier rows.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from .agreement import READS_PART_LABELS, cross_agreement, refine_global_labels
from .clustering import CLUSTERERS, FeatureSpace, cluster_centroids, cluster_dbscan, mmt_eps
from .eps_grid import labels_over_grid
from .eps_rule import choose_eps
from .k1_rule import k1_from_cluster_size, median_cluster_size
from .knn import as_float32_features, is_cuda_tensor, knn_search, l2_normalize, l2_normalize_torch
from .params import ClusterParams

__all__ = ["PseudoLabels", "camera_normalize", "generate_pseudo_labels"]

logger = logging.getLogger("fastreid." + __name__)  # FastReID's handlers print "fastreid.*" on rank 0


def torch_from_numpy_on(x: np.ndarray, like: Any) -> Any:
    """``x`` as a torch tensor on the device of the tensor ``like``."""
    import torch

    return torch.from_numpy(x).to(like.device)


@dataclass
class PseudoLabels:
    """Result of one clustering round. ``labels``: (N,) int64, -1 = outlier (sits out the epoch)."""

    labels: np.ndarray
    num_classes: int
    agreement: np.ndarray  # (N, P) float32 cross-agreement C_p(i); ones when LGMR is off
    centroids: Dict[str, np.ndarray]  # "global", "part1".."partP": (K, D) L2-normalised, from `labels`
    # clusterer's labels of each part space; [] when nothing reads them: LGMR off, or its agreement mode does not
    # read part labels (neighbour, the default: the part spaces are then searched for kNN lists, not clustered)
    part_labels: List[np.ndarray]
    labels_before_lgmr: np.ndarray  # global clusterer's labels before refinement
    # wall seconds: knn_<space>, jaccard_<space>, <method>_<space> (the clusterer, e.g. dbscan_global,
    # kmeans_part1; space = global, part1..), lgmr, centroids, total; eps_auto (EPS_RULE auto: the grid's
    # clusterings and the choice)
    timings: Dict[str, float] = field(default_factory=dict)
    eps: Optional[float] = None  # DBSCAN's eps this round (computed by EPS_RULE mmt when not given); None: not dbscan
    eps_choice: Optional[Dict[str, Any]] = None  # EPS_RULE auto, when chosen this round: grid, scores, criterion
    k1: Optional[int] = None  # the Jaccard distance's k1 this round; None: not dbscan
    k1_choice: Optional[Dict[str, Any]] = None  # K1_RULE size, when chosen this round: k1_max, median_size, k1

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


def generate_pseudo_labels(global_feats: Any, part_feats: Sequence[Any], params: Optional[ClusterParams] = None, *,
                           camids: Any = None, n_threads: Optional[int] = None, **overrides: Any) -> PseudoLabels:
    """Cluster the global space and, with LGMR, each part space; refine the global labels.

    ``params`` (default :class:`ClusterParams`()) with ``overrides`` (its field names, e.g.
    ``eps=0.5``) replacing fields. Steps: (camera standardisation) -> per space exact kNN
    (k = max(k1, lgmr_k + 1), shared by the Jaccard distance and LGMR's neighbour overlap) -> the
    ``method`` clusterer (DBSCAN on the sparse k-reciprocal Jaccard distance by default) ->
    cross-agreement C (N, P) -> refine_global_labels -> centroids of the final labels in every space
    (from the L2-normalised input features, not the camera-standardised ones: they are the classifier
    rows for the students' features). Features: (N, D) numpy arrays or torch tensors; CUDA tensors stay
    on their GPU for the kNN search, k-means and the centroids (the sparse Jaccard / DBSCAN path copies
    them to the CPU). Spaces are processed one at a time, each logged as it starts and ends (logger
    ``fastreid.inclr_fastreid.pseudo_labels.generate``, INFO); already-normalised float32 input is not copied.
    Only what is read is computed: the part spaces are clustered when LGMR's agreement mode reads their
    labels (``mean``) or EPS_RULE auto scores them; under LGMR's default ``neighbour`` agreement they are only
    searched (their kNN lists give the neighbour overlap) and ``part_labels`` is [].

    ``eps_rule="mmt"`` (dbscan): without an ``eps`` override, eps is computed from the global space's
    sparse Jaccard distance (:func:`~.clustering.mmt_eps`) and used in every space; the caller keeps
    ``result.eps`` and passes it back as ``eps=`` in later rounds (MMT fixes it at the first clustering).
    ``eps_rule="auto"`` (dbscan, docs/design.md §4.3.1): without an ``eps`` override, every clustered space
    is clustered at each eps of ``eps_grid`` on its Jaccard matrix (graph components, cheap), the eps of
    highest global/part agreement times coverage is chosen (:func:`~.eps_rule.choose_eps`; no labels; the
    part spaces are scored even when LGMR is off) and the spaces LGMR uses are then clustered at it as
    under ``fixed``; ``result.eps_choice`` holds the grid and its scores. ``auto_coverage="multi_camera"`` (the
    default) weights the agreement by the share of images in clusters spanning >= 2 cameras of ``camids``.

    ``k1_rule="size"`` (dbscan, docs/design.md §4.3.2): without a ``k1`` override, the round is first run at
    ``k1`` (global clustering at the eps its rule gives, LGMR off), then again at
    ``clip(round(k1_per_size * median cluster size), k1_min, k1)`` (:mod:`.k1_rule`; ``k1`` kept when the first
    run has no cluster); ``result.k1_choice`` records it and the caller passes ``result.k1`` back as ``k1=``.
    """
    p = replace(params or ClusterParams(), **overrides)
    if p.method == "dbscan" and p.k1_rule == "size" and "k1" not in overrides:
        return _with_k1_from_size(global_feats, part_feats, p, camids, n_threads, overrides)
    compute_eps = p.method == "dbscan" and p.eps_rule == "mmt" and "eps" not in overrides
    choose_auto = p.method == "dbscan" and p.eps_rule == "auto" and "eps" not in overrides
    t_all = time.perf_counter()
    timings: Dict[str, float] = {}
    n = _num_rows(global_feats, "global_feats")
    needs_cams = [k for k, on in (("CAMERA_NORM True", p.camera_norm),
                                  ("AUTO_COVERAGE multi_camera", choose_auto and p.auto_coverage == "multi_camera")) if on]
    if needs_cams and np.shape(camids) != (n,):
        raise ValueError(" and ".join(f"INCLR.CLUSTER.{k}" for k in needs_cams) + f" need(s) camids (one camera id "
                         f"per image, {n}), got {None if camids is None else np.shape(camids)}; pass them, or set "
                         "CAMERA_NORM False / AUTO_COVERAGE clustered")
    for i, part in enumerate(part_feats):
        if _num_rows(part, f"part_feats[{i}]") != n:
            raise ValueError(f"part_feats[{i}] has {_num_rows(part, '')} rows but the global features have {n}")
    if p.lgmr_enabled and not part_feats:
        raise ValueError("LGMR needs part features (part_feats is empty); pass them or set lgmr_enabled=False")
    if p.k_search > n:
        raise ConfigError(f"INCLR.CLUSTER.K1={p.k1}" + (f" / INCLR.LGMR.K={p.lgmr_k}" if p.lgmr_enabled else "")
                          + f" need(s) more than the N={n} target images; lower them")

    spaces = [("global", global_feats)] + [(f"part{i + 1}", f) for i, f in enumerate(part_feats)]
    labels_by_space: Dict[str, np.ndarray] = {}
    knn_others: Dict[str, np.ndarray] = {}
    grid_labels: Dict[str, np.ndarray] = {}  # EPS_RULE auto: (G, N) labels per space
    jaccards: Dict[str, Any] = {}  # EPS_RULE auto: the sparse matrices, kept until eps is chosen
    # Only what is read: LGMR reads every part space's kNN lists (the neighbour overlap) but their cluster labels
    # only under an agreement mode that reads them (`mean`); auto scores the grid on every space there is, LGMR
    # or not (§4.3.1). A space that is searched but not clustered costs one kNN search.
    searched = spaces if (p.lgmr_enabled or choose_auto) else spaces[:1]
    parts_labelled = p.lgmr_enabled and p.agreement in READS_PART_LABELS
    step = "jaccard + dbscan" if p.method == "dbscan" else p.method
    for i, (name, raw) in enumerate(searched):
        clustered = name == "global" or choose_auto or parts_labelled
        what = f"kNN + {'eps grid' if choose_auto else step}" if clustered else "kNN only (LGMR neighbours)"
        logger.info("clustering: %s %d/%d (%s), N=%d ...", name, i + 1, len(searched), what, n)
        t0 = time.perf_counter()
        cuda = is_cuda_tensor(raw)
        cpu_feats: Optional[np.ndarray] = None
        if p.camera_norm:
            cpu_feats = camera_normalize(l2_normalize(as_float32_features(raw, name)), camids)
            dev_feats = torch_from_numpy_on(cpu_feats, raw) if cuda else None
        elif cuda:  # stays on its GPU: kNN and k-means run there, a CPU copy is made only if the Jaccard needs it
            dev_feats = l2_normalize_torch(raw)
        else:
            cpu_feats, dev_feats = l2_normalize(as_float32_features(raw, name)), None
        sims, idx = knn_search(cpu_feats if dev_feats is None else dev_feats, p.k_search, normalize=False)
        t1 = time.perf_counter()
        if clustered:
            space = FeatureSpace(name, cpu_feats, sims, idx, p, n_threads=n_threads, device_features=dev_feats)
            if compute_eps:  # the global space comes first: its eps serves every space
                eps = mmt_eps(space.jaccard(), n, p.rho)
                if eps > p.max_distance:
                    raise ConfigError(f"INCLR.CLUSTER.EPS_RULE mmt gave eps={eps:.4f} > INCLR.CLUSTER.MAX_DISTANCE="
                                      f"{p.max_distance} (fewer than the RHO={p.rho} fraction of pairs are stored); "
                                      "raise MAX_DISTANCE (<= 1)")
                if eps <= 0:
                    raise ConfigError(f"INCLR.CLUSTER.EPS_RULE mmt gave eps=0: the smallest RHO={p.rho} fraction of "
                                      "the pairs are all at Jaccard distance 0 (images with identical neighbourhoods, "
                                      "e.g. duplicates); raise INCLR.CLUSTER.RHO or use EPS_RULE fixed or auto")
                p, compute_eps = replace(p, eps=eps), False
            if choose_auto:
                jaccards[name] = space.jaccard()
                t2 = time.perf_counter()
                grid_labels[name] = labels_over_grid(jaccards[name], p.eps_grid, p.min_samples)
                timings["eps_auto"] = timings.get("eps_auto", 0.0) + time.perf_counter() - t2
            else:
                labels_by_space[name] = CLUSTERERS[p.method](space, p)
            timings[f"jaccard_{name}"] = space.jaccard_seconds
            if not choose_auto:  # auto: set below, at the chosen eps
                timings[f"{p.method}_{name}"] = time.perf_counter() - t1 - space.jaccard_seconds
            del space
        if p.lgmr_enabled:
            knn_others[name] = np.ascontiguousarray(idx[:, 1:int(p.lgmr_k) + 1])
        timings[f"knn_{name}"] = t1 - t0
        logger.info("clustering: %s %d/%d done in %.1f s (kNN %.1f s)", name, i + 1, len(searched),
                    time.perf_counter() - t0, t1 - t0)
        del sims, idx, cpu_feats, dev_feats

    eps_choice = None
    if choose_auto:
        t0 = time.perf_counter()
        choice = choose_eps(grid_labels, p.eps_grid, global_dist=jaccards["global"], min_samples=p.min_samples,
                            camids=None if camids is None else np.asarray(camids), coverage=p.auto_coverage)
        p, eps_choice = replace(p, eps=choice.eps), choice.as_record()
        timings["eps_auto"] += time.perf_counter() - t0
        logger.info("clustering: EPS_RULE auto chose eps=%.2f in %.1f s", p.eps, timings["eps_auto"])
        for name, dist in (jaccards.items() if parts_labelled else [("global", jaccards["global"])]):
            # the round's labels: DBSCAN at the chosen eps, as under fixed (parts only when LGMR reads them)
            t0 = time.perf_counter()
            labels_by_space[name] = cluster_dbscan(dist, p.eps, p.min_samples)
            timings[f"dbscan_{name}"] = time.perf_counter() - t0
        del jaccards, grid_labels

    before = labels_by_space["global"]
    t0 = time.perf_counter()
    if p.lgmr_enabled:
        part_labels = [labels_by_space[f"part{i + 1}"] for i in range(len(part_feats))] if parts_labelled else []
        agreement = cross_agreement(global_feats, part_feats, before, part_labels, int(p.lgmr_k),
                                    global_knn=knn_others["global"],
                                    part_knn_list=[knn_others[f"part{i + 1}"] for i in range(len(part_feats))],
                                    mode=p.agreement)
        labels = refine_global_labels(before, agreement, p.min_agreement)
    else:
        part_labels = []
        agreement = np.ones((n, len(part_feats)), dtype=np.float32)
        labels = before.copy()
    timings["lgmr"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    centroids = {name: cluster_centroids(raw, labels) for name, raw in spaces}
    timings["centroids"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    logger.info("clustering: done in %.1f s (%s)", timings["total"],
                ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k != "total"))
    num_classes = int(labels.max()) + 1 if (labels >= 0).any() else 0
    return PseudoLabels(labels=labels, num_classes=num_classes, agreement=agreement, centroids=centroids,
                        part_labels=part_labels, labels_before_lgmr=before, timings=timings,
                        eps=float(p.eps) if p.method == "dbscan" else None, eps_choice=eps_choice,
                        k1=int(p.k1) if p.method == "dbscan" else None)


def _with_k1_from_size(global_feats: Any, part_feats: Sequence[Any], p: ClusterParams, camids: Any,
                       n_threads: Optional[int], overrides: Dict[str, Any]) -> PseudoLabels:
    """K1_RULE size (§4.3.2): a first clustering at ``p.k1`` (global labels only), then the round at the k1 its
    median cluster size gives."""
    t0 = time.perf_counter()
    first = generate_pseudo_labels(global_feats, part_feats, p, camids=camids, n_threads=n_threads,
                                   **{**overrides, "k1_rule": "fixed", "lgmr_enabled": False})
    size = median_cluster_size(first.labels_before_lgmr)
    k1 = k1_from_cluster_size(size, p.k1_per_size, p.k1_min, p.k1)
    estimate_s = time.perf_counter() - t0
    result = generate_pseudo_labels(global_feats, part_feats, p, camids=camids, n_threads=n_threads,
                                    **{**overrides, "k1": k1})
    result.k1_choice = {"rule": "size", "k1_max": int(p.k1), "eps_at_k1_max": first.eps,
                        "median_size": size, "per_size": float(p.k1_per_size), "k1_min": int(p.k1_min), "k1": k1}
    result.timings["k1_size"] = estimate_s
    result.timings["total"] += estimate_s
    return result
