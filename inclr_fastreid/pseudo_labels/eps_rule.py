"""The rules of ``INCLR.CLUSTER.EPS_RULE``, DBSCAN's eps for a round (docs/design.md §4.3, §4.3.1): ``fixed``
(``INCLR.CLUSTER.EPS``), ``mmt`` (MMT-DBSCAN's, from ``RHO`` at the first round, kept for the run) and ``auto``
(chosen without identity labels, below).

The right eps moves with the data and the model; a user adapting to new cameras has no labels to
tune it. At a clustering round every feature space (global, part1..P) is clustered by DBSCAN at each
eps of a grid on its own sparse Jaccard matrix (computed once per space and reused across the grid;
nothing N x N is ever dense), and the eps is the one at which the *independent views agree most*:
the global clustering at that eps agrees best (adjusted Rand index) with each part's clustering at
the part's own best-matching grid eps (:func:`~.eps_grid.cross_space_agreement`). Too small an eps leaves most
images outliers (few pairs to agree on), too large chains identities in each space along different,
noise-driven paths (the spaces' giant clusters do not coincide, which the chance correction of ARI
scores near 0); the identities the data plants are the clusters the views share. Without part
spaces (LGMR off, a plain Baseline) the knee of the sorted k-distance curve (:func:`~.eps_grid.k_distance_knee`,
the DBSCAN authors' heuristic) is used.

Agreement alone peaks where the views share each camera's look: precise clusters that split an identity
into same-camera fragments and leave many images out, labels a training round learns little camera
invariance from. So the agreement is weighted by the *coverage* of the clustering (``AUTO_COVERAGE``,
default ``multi_camera``): the share of images in a cluster that spans at least two cameras (the only
images that give the losses a cross-camera positive), the largest cluster excepted (at too large an eps
the views agree on chaining everything into one component, which labels nothing); :func:`~.eps_grid.coverage_over_grid`.
The eps of the best score is taken (ties: the smaller eps).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError
from .clustering import mmt_eps
from .eps_grid import coverage_over_grid, k_distance_knee, labels_over_grid, per_view_agreement
from .params import AUTO_COVERAGES, DEFAULT_EPS_GRID, ClusterParams
from .registries import EPS_RULES
from .scale import ScaleChoice, ScaleRule

__all__ = ["DEFAULT_EPS_GRID", "AUTO_COVERAGES", "EpsChoice", "choose_eps", "EpsRule", "FixedEps", "MmtEps", "AutoEps"]


@dataclass
class EpsChoice:
    """What the auto rule chose and why: the grid, one score per eps, the criterion's name."""

    eps: float
    grid: List[float]
    scores: List[float]  # the criterion per grid eps: agreement x coverage
    criterion: str
    index: int  # position of ``eps`` in ``grid`` (-1 when the criterion picks off the grid)
    labels: Dict[str, np.ndarray] = field(default_factory=dict)  # each space's labels at ``eps`` (when computed)
    agreement: List[float] = field(default_factory=list)  # the two factors of ``scores`` (empty for the knee)
    coverage: List[float] = field(default_factory=list)
    per_view: List[List[float]] = field(default_factory=list)  # per part space: its agreement x coverage
    select: str = "max"  # how ``eps`` was picked: "max" (the best score) or "knee" (the grid eps nearest it)

    def as_record(self) -> Dict[str, object]:
        """JSON-able summary for the log (no label arrays)."""
        rec: Dict[str, object] = {"eps": round(float(self.eps), 6), "criterion": self.criterion,
                                  "grid": [round(float(e), 4) for e in self.grid],
                                  "scores": [round(float(s), 4) for s in self.scores]}
        if self.agreement:
            rec["agreement"] = [round(float(s), 4) for s in self.agreement]
            rec["coverage"] = [round(float(s), 4) for s in self.coverage]
        rec["select"] = self.select
        if self.per_view:
            rec["per_view"] = [[round(float(s), 4) for s in row] for row in self.per_view]
        return rec


def choose_eps(grid_labels: Mapping[str, np.ndarray], grid: Sequence[float], *,
               global_dist: Optional[sp.spmatrix] = None, min_samples: int = 4,
               camids: Optional[np.ndarray] = None, coverage: str = "multi_camera") -> EpsChoice:
    """The auto rule: per part view, cross-space agreement (:func:`~.eps_grid.per_view_agreement`) times the
    global clustering's ``coverage`` (:func:`~.eps_grid.coverage_over_grid`; ``multi_camera`` reads ``camids``,
    (N,)); the score of an eps is the mean over the views, and the best score is taken (ties: the smaller eps).
    With a single space, the k-distance knee of ``global_dist`` snapped to the grid."""
    grid = [float(e) for e in grid]
    if len(grid_labels) > 1:
        views = per_view_agreement(grid_labels)
        agree = views.mean(0)
        cover = coverage_over_grid(grid_labels["global"], coverage, camids)
        per_view = views * cover
        scores = agree * cover  # the views' mean of per_view
        best = int(np.argmax(scores))  # the first of equal scores
        one_cam = coverage == "multi_camera" and np.unique(np.asarray(camids)).size < 2
        criterion = "cross_space_agreement_x_" + ("clustered_share (one camera)" if one_cam else
                                                  "multi_camera_share" if coverage == "multi_camera" else
                                                  "clustered_share")
        return EpsChoice(eps=grid[best], grid=grid, scores=scores.tolist(), criterion=criterion,
                         index=best, labels={k: v[best] for k, v in grid_labels.items()},
                         agreement=agree.tolist(), coverage=cover.tolist(), per_view=per_view.tolist(),
                         select="max")
    if global_dist is None:
        raise ValueError("choose_eps with one space needs global_dist for the k-distance knee")
    knee = k_distance_knee(global_dist, min_samples)
    best = int(np.argmin(np.abs(np.asarray(grid) - knee)))
    scores = (-np.abs(np.asarray(grid) - knee)).tolist()
    return EpsChoice(eps=grid[best], grid=grid, scores=scores, criterion="k_distance_knee", index=best,
                     labels={k: v[best] for k, v in grid_labels.items()}, select="knee")


class EpsRule(ScaleRule):
    """A value of ``INCLR.CLUSTER.EPS_RULE``: the round's eps from the spaces' sparse Jaccard distances
    (:data:`~.registries.EPS_RULES`)."""

    scale = "eps"
    reads_every_space = False  # True: the choice scores every space, so each gets its distance, LGMR on or off

    def camera_keys(self, p: ClusterParams) -> List[str]:
        """This rule's settings in ``p`` that read camera ids (named when the round has none)."""
        return []

    def choose(self, dists: Mapping[str, sp.csr_matrix], p: ClusterParams, camids: Optional[Any]) -> ScaleChoice:
        """This round's eps from ``dists`` (space -> sparse Jaccard distance: the global space, and every other
        space the round clusters or this rule reads) and the images' camera ids (None: unknown)."""
        raise NotImplementedError


class FixedEps(EpsRule):
    """``fixed``: ``INCLR.CLUSTER.EPS`` every round (SpCL's 0.6; PPLR's script 0.5), or the eps a caller gives."""

    name, fixed = "fixed", True

    def choose(self, dists: Mapping[str, sp.csr_matrix], p: ClusterParams, camids: Optional[Any]) -> ScaleChoice:
        return ScaleChoice(p.eps)


class MmtEps(EpsRule):
    """``mmt``: MMT-DBSCAN's eps (yxgeee/MMT ``examples/mmt_train_dbscan.py``: the mean of the smallest ``RHO``
    fraction of the global space's pairwise distances, :func:`~.clustering.mmt_eps`) at the first round, kept
    for the run as MMT fixes it at its first clustering; it serves every space."""

    name = "mmt"

    def kept(self, p: ClusterParams) -> bool:
        return True

    def choose(self, dists: Mapping[str, sp.csr_matrix], p: ClusterParams, camids: Optional[Any]) -> ScaleChoice:
        eps = mmt_eps(dists["global"], dists["global"].shape[0], p.rho)
        if eps > p.max_distance:
            raise ConfigError(f"INCLR.CLUSTER.EPS_RULE mmt gave eps={eps:.4f} > INCLR.CLUSTER.MAX_DISTANCE="
                              f"{p.max_distance} (fewer than the RHO={p.rho} fraction of pairs are stored); "
                              "raise MAX_DISTANCE (<= 1)")
        if eps <= 0:
            raise ConfigError(f"INCLR.CLUSTER.EPS_RULE mmt gave eps=0: the smallest RHO={p.rho} fraction of "
                              "the pairs are all at Jaccard distance 0 (images with identical neighbourhoods, "
                              "e.g. duplicates); raise INCLR.CLUSTER.RHO or use EPS_RULE fixed or auto")
        return ScaleChoice(eps)

    def kept_message(self, value: Any, p: ClusterParams, record: Mapping[str, Any]) -> str:
        return f"INCLR.CLUSTER.EPS_RULE mmt: eps = {value:.4f}, kept for the run (rho {p.rho:g})."


class AutoEps(EpsRule):
    """``auto`` (docs/design.md §4.3.1): every space clustered over ``EPS_GRID`` and the eps of the best agreement
    x coverage taken (:func:`choose_eps`; the module docstring); re-chosen every round, or kept from the first
    with ``EPS_FREEZE``."""

    name = "auto"
    reads_every_space = True

    def check(self, p: ClusterParams) -> None:
        grid = [float(e) for e in p.eps_grid]
        if p.method == "dbscan" and (not grid or not all(0 < e <= p.max_distance for e in grid)):
            raise ValueError(f"INCLR.CLUSTER.EPS_GRID {list(p.eps_grid)}: EPS_RULE auto needs a non-empty list "
                             f"of eps values in (0, INCLR.CLUSTER.MAX_DISTANCE={p.max_distance}]; pairs farther "
                             "than MAX_DISTANCE are not stored. Lower the grid or raise MAX_DISTANCE (<= 1).")

    def kept(self, p: ClusterParams) -> bool:
        return bool(p.eps_freeze)

    def camera_keys(self, p: ClusterParams) -> List[str]:
        return ["AUTO_COVERAGE multi_camera"] if p.auto_coverage == "multi_camera" else []

    def choose(self, dists: Mapping[str, sp.csr_matrix], p: ClusterParams, camids: Optional[Any]) -> ScaleChoice:
        grid_labels = {name: labels_over_grid(d, p.eps_grid, p.min_samples) for name, d in dists.items()}
        choice = choose_eps(grid_labels, p.eps_grid, global_dist=dists["global"], min_samples=p.min_samples,
                            camids=None if camids is None else np.asarray(camids), coverage=p.auto_coverage)
        return ScaleChoice(choice.eps, choice.as_record())

    def kept_message(self, value: Any, p: ClusterParams, record: Mapping[str, Any]) -> str:
        return f"INCLR.CLUSTER.EPS_RULE auto: eps = {value:.4f}, kept for the run (EPS_FREEZE)."


for _rule in (FixedEps(), MmtEps(), AutoEps()):
    EPS_RULES[_rule.name] = _rule
