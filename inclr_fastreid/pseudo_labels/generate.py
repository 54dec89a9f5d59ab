"""One call from teacher features to this epoch's pseudo labels (docs/design.md §4.3-4.4).

Pure function, no FastReID state: the PseudoLabelHook extracts features, calls
:func:`generate_pseudo_labels` and swaps the train set / classifier rows. One straight pipeline: choose k1
(``K1_RULE``, :mod:`.k1_rule`) -> per space the kNN lists and, for DBSCAN, the sparse Jaccard distance ->
choose eps (``EPS_RULE``, :mod:`.eps_rule`) -> cluster -> LGMR -> centroids.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError
from .agreement import READS_PART_LABELS, cross_agreement, refine_global_labels
from .clustering import FeatureSpace, cluster_centroids
from .eps_rule import EpsRule
from .k1_rule import K1Rule
from .knn import as_float32_features, is_cuda_tensor, knn_search, l2_normalize, l2_normalize_torch
from .params import ClusterParams
from .registries import CLUSTERERS
from .scale import scale_rules

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
    # kmeans_part1; space = global, part1..), lgmr, centroids, total; eps_<rule> (EPS_RULE mmt / auto choosing
    # eps: auto's includes the grid's clusterings); k1_<rule> (K1_RULE size choosing k1: its first clustering)
    timings: Dict[str, float] = field(default_factory=dict)
    eps: Optional[float] = None  # DBSCAN's eps this round (as EPS_RULE chose it, or given); None: not dbscan
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


@dataclass
class _RoundInputs:
    """A round's features, checked once: (name, features) per space, global first; N; camera ids; threads."""

    spaces: List[Tuple[str, Any]]
    n: int
    camids: Any
    n_threads: Optional[int]


def _checked_inputs(global_feats: Any, part_feats: Sequence[Any], p: ClusterParams, eps_rule: Optional[EpsRule],
                    camids: Any, n_threads: Optional[int]) -> _RoundInputs:
    n = _num_rows(global_feats, "global_feats")
    needs_cams = (["CAMERA_NORM True"] if p.camera_norm else []) + (eps_rule.camera_keys(p) if eps_rule else [])
    if needs_cams and np.shape(camids) != (n,):
        raise ValueError(" and ".join(f"INCLR.CLUSTER.{k}" for k in needs_cams) + f" need(s) camids (one camera id "
                         f"per image, {n}), got {None if camids is None else np.shape(camids)}; pass them, or set "
                         "CAMERA_NORM False / AUTO_COVERAGE clustered")
    for i, part in enumerate(part_feats):
        if _num_rows(part, f"part_feats[{i}]") != n:
            raise ValueError(f"part_feats[{i}] has {_num_rows(part, '')} rows but the global features have {n}")
    if p.lgmr_enabled and not part_feats:
        raise ValueError("LGMR needs part features (part_feats is empty); pass them or set lgmr_enabled=False")
    spaces = [("global", global_feats)] + [(f"part{i + 1}", f) for i, f in enumerate(part_feats)]
    return _RoundInputs(spaces, n, camids, n_threads)


def generate_pseudo_labels(global_feats: Any, part_feats: Sequence[Any], params: Optional[ClusterParams] = None, *,
                           camids: Any = None, n_threads: Optional[int] = None, **overrides: Any) -> PseudoLabels:
    """Cluster the global space and, with LGMR, each part space; refine the global labels.

    ``params`` (default :class:`ClusterParams`()) with ``overrides`` (its field names, e.g.
    ``eps=0.5``) replacing fields. Steps: k1 by ``k1_rule`` -> (camera standardisation) -> per space exact kNN
    (k = max(k1, lgmr_k + 1), shared by the Jaccard distance and LGMR's neighbour overlap) and, for DBSCAN, the
    sparse k-reciprocal Jaccard distance -> eps by ``eps_rule`` (DBSCAN) -> the ``method`` clusterer ->
    cross-agreement C (N, P) -> refine_global_labels -> centroids of the final labels in every space
    (from the L2-normalised input features, not the camera-standardised ones: they are the classifier
    rows for the students' features). Features: (N, D) numpy arrays or torch tensors; CUDA tensors stay
    on their GPU for the kNN search, k-means and the centroids (the sparse Jaccard / DBSCAN path copies
    them to the CPU). Spaces are searched one at a time, each logged as it starts and ends (logger
    ``fastreid.inclr_fastreid.pseudo_labels.generate``, INFO); already-normalised float32 input is not copied.
    Only what is read is computed: the part spaces are clustered when LGMR's agreement mode reads their
    labels (``mean``) and get their Jaccard distance when EPS_RULE auto scores them; under LGMR's default
    ``neighbour`` agreement they are only searched (their kNN lists give the neighbour overlap) and
    ``part_labels`` is [].

    The scale rules (:mod:`.eps_rule`, :mod:`.k1_rule`; docs/design.md §4.3, §4.3.1-4.3.2): an ``eps`` or
    ``k1`` override is taken as given (the ``fixed`` rule). Otherwise ``eps_rule="mmt"`` computes eps from the
    global space's distance, ``"auto"`` chooses it over ``eps_grid`` from every space's distance
    (``result.eps_choice`` holds the grid and its scores; ``auto_coverage="multi_camera"``, the default, reads
    ``camids``), and ``k1_rule="size"`` first clusters the round at ``k1`` (the global space at the eps its
    rule gives, LGMR off) and runs it at ``clip(round(k1_per_size * median cluster size), k1_min, k1)``
    (``result.k1_choice``). A caller that keeps a choice for the run (the hook: :class:`~.scale.FrozenScale`)
    passes ``result.eps`` / ``result.k1`` back as ``eps=`` / ``k1=``.
    """
    p = replace(params or ClusterParams(), **overrides)
    rules = scale_rules(p, given=overrides)
    k1_rule: K1Rule = rules["k1"]
    eps_rule: Optional[EpsRule] = rules.get("eps")
    inputs = _checked_inputs(global_feats, part_feats, p, eps_rule, camids, n_threads)
    t0 = time.perf_counter()
    k1 = k1_rule.choose(p, lambda: _cluster_round(inputs, replace(p, lgmr_enabled=False), eps_rule))
    k1_seconds = time.perf_counter() - t0
    result = _cluster_round(inputs, replace(p, k1=k1.value), eps_rule)
    if not k1_rule.fixed:
        result.k1_choice = k1.record
        result.timings[f"k1_{k1_rule.name}"] = k1_seconds
        result.timings["total"] += k1_seconds
    return result


def _cluster_round(inp: _RoundInputs, p: ClusterParams, eps_rule: Optional[EpsRule]) -> PseudoLabels:
    """The round at ``p.k1``: distances -> eps -> cluster -> LGMR -> centroids."""
    t_all = time.perf_counter()
    timings: Dict[str, float] = {}
    if p.k_search > inp.n:
        raise ConfigError(f"INCLR.CLUSTER.K1={p.k1}" + (f" / INCLR.LGMR.K={p.lgmr_k}" if p.lgmr_enabled else "")
                          + f" need(s) more than the N={inp.n} target images; lower them")
    parts_labelled = p.lgmr_enabled and p.agreement in READS_PART_LABELS
    spaces, knn_others = _search_spaces(inp, p, eps_rule is not None and eps_rule.reads_every_space,
                                        parts_labelled, timings)
    eps_choice = None
    if eps_rule is not None:
        t0 = time.perf_counter()
        pick = eps_rule.choose({name: space.jaccard() for name, space in spaces.items()}, p, inp.camids)
        p, eps_choice = replace(p, eps=pick.value), pick.record
        if not eps_rule.fixed:
            timings[f"eps_{eps_rule.name}"] = time.perf_counter() - t0
            logger.info("clustering: EPS_RULE %s chose eps=%g in %.1f s", eps_rule.name, p.eps,
                        timings[f"eps_{eps_rule.name}"])
    labels_by_space: Dict[str, np.ndarray] = {}
    for name, space in spaces.items():  # the round's labels: the global space, the parts when LGMR reads theirs
        if name == "global" or parts_labelled:
            t0 = time.perf_counter()
            labels_by_space[name] = CLUSTERERS[p.method](space, p)
            timings[f"{p.method}_{name}"] = time.perf_counter() - t0
            logger.info("clustering: %s %s in %.1f s", p.method, name, timings[f"{p.method}_{name}"])
    del spaces

    n, n_parts = inp.n, len(inp.spaces) - 1
    global_feats, part_feats = inp.spaces[0][1], [f for _, f in inp.spaces[1:]]
    before = labels_by_space["global"]
    t0 = time.perf_counter()
    if p.lgmr_enabled:
        part_labels = [labels_by_space[f"part{i + 1}"] for i in range(n_parts)] if parts_labelled else []
        agreement = cross_agreement(global_feats, part_feats, before, part_labels, int(p.lgmr_k),
                                    global_knn=knn_others["global"],
                                    part_knn_list=[knn_others[f"part{i + 1}"] for i in range(n_parts)],
                                    mode=p.agreement)
        labels = refine_global_labels(before, agreement, p.min_agreement)
    else:
        part_labels = []
        agreement = np.ones((n, n_parts), dtype=np.float32)
        labels = before.copy()
    timings["lgmr"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    centroids = {name: cluster_centroids(raw, labels) for name, raw in inp.spaces}
    timings["centroids"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    logger.info("clustering: done in %.1f s (%s)", timings["total"],
                ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k != "total"))
    num_classes = int(labels.max()) + 1 if (labels >= 0).any() else 0
    return PseudoLabels(labels=labels, num_classes=num_classes, agreement=agreement, centroids=centroids,
                        part_labels=part_labels, labels_before_lgmr=before, timings=timings,
                        eps=float(p.eps) if p.method == "dbscan" else None, eps_choice=eps_choice,
                        k1=int(p.k1) if p.method == "dbscan" else None)


def _search_spaces(inp: _RoundInputs, p: ClusterParams, scored: bool, parts_labelled: bool,
                   timings: Dict[str, float]) -> Tuple[Dict[str, FeatureSpace], Dict[str, np.ndarray]]:
    """Per space, one at a time: the exact kNN lists (LGMR's neighbours, the self excluded) and, for a space the
    round clusters or the eps rule scores (``scored``: every space), its FeatureSpace; under DBSCAN the sparse
    Jaccard distance, all DBSCAN and the eps rules read, is built here and the space's features let go."""
    searched = inp.spaces if (p.lgmr_enabled or scored) else inp.spaces[:1]
    dbscan = p.method == "dbscan"
    kept: Dict[str, FeatureSpace] = {}
    knn_others: Dict[str, np.ndarray] = {}
    for i, (name, raw) in enumerate(searched):
        labelled = name == "global" or parts_labelled
        what = ("kNN + Jaccard" if dbscan else "kNN") + (f", then {p.method}" if labelled else " (eps grid)")
        if not (labelled or scored):
            what = "kNN only (LGMR neighbours)"
        logger.info("clustering: %s %d/%d (%s), N=%d ...", name, i + 1, len(searched), what, inp.n)
        t0 = time.perf_counter()
        cuda = is_cuda_tensor(raw)
        cpu_feats: Optional[np.ndarray] = None
        if p.camera_norm:
            cpu_feats = camera_normalize(l2_normalize(as_float32_features(raw, name)), inp.camids)
            dev_feats = torch_from_numpy_on(cpu_feats, raw) if cuda else None
        elif cuda:  # stays on its GPU: kNN and k-means run there, a CPU copy is made only if the Jaccard needs it
            dev_feats = l2_normalize_torch(raw)
        else:
            cpu_feats, dev_feats = l2_normalize(as_float32_features(raw, name)), None
        sims, idx = knn_search(cpu_feats if dev_feats is None else dev_feats, p.k_search, normalize=False)
        t1 = time.perf_counter()
        if labelled or scored:
            space = FeatureSpace(name, cpu_feats, sims, idx, p, n_threads=inp.n_threads, device_features=dev_feats)
            if dbscan:
                space.jaccard()
                space.release_features()
            timings[f"jaccard_{name}"] = space.jaccard_seconds
            kept[name] = space
        if p.lgmr_enabled:
            knn_others[name] = np.ascontiguousarray(idx[:, 1:int(p.lgmr_k) + 1])
        timings[f"knn_{name}"] = t1 - t0
        logger.info("clustering: %s %d/%d done in %.1f s (kNN %.1f s)", name, i + 1, len(searched),
                    time.perf_counter() - t0, t1 - t0)
        del sims, idx, cpu_feats, dev_feats
    return kept, knn_others
