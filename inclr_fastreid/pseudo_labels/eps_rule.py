"""``INCLR.CLUSTER.EPS_RULE auto``: DBSCAN's eps chosen without identity labels (docs/design.md §4.3.1).

The right eps moves with the data and the model; a user adapting to new cameras has no labels to
tune it. At a clustering round every feature space (global, part1..P) is clustered by DBSCAN at each
eps of a grid on its own sparse Jaccard matrix (computed once per space and reused across the grid;
nothing N x N is ever dense), and the eps is the one at which the *independent views agree most*:
the global clustering at that eps agrees best (adjusted Rand index) with each part's clustering at
the part's own best-matching grid eps (:func:`cross_space_agreement`). Too small an eps leaves most
images outliers (few pairs to agree on), too large chains identities in each space along different,
noise-driven paths (the spaces' giant clusters do not coincide, which the chance correction of ARI
scores near 0); the identities the data plants are the clusters the views share. Without part
spaces (LGMR off, a plain Baseline) the knee of the sorted k-distance curve (:func:`k_distance_knee`,
the DBSCAN authors' heuristic) is used.

Agreement alone peaks where the views share each camera's look: precise clusters that split an identity
into same-camera fragments and leave many images out, labels a training round learns little camera
invariance from. So the agreement is weighted by the *coverage* of the clustering (``AUTO_COVERAGE``,
default ``multi_camera``): the share of images in a cluster that spans at least two cameras (the only
images that give the losses a cross-camera positive), the largest cluster excepted (at too large an eps
the views agree on chaining everything into one component, which labels nothing); :func:`coverage_over_grid`.

The pick (``AUTO_SELECT``): ``max`` (default) takes the best mean score; ``one_se`` the one-standard-error
rule (Breiman et al., CART): each part space is one view with its own score curve (its agreement with the
global clustering x coverage), and the eps is the *smallest* whose mean score is within one standard error
(over the views, at the best eps) of the best mean (:func:`one_se_index`). The coverage term is flat near
its top, so ``max`` sits on the coarse side of a plateau the views cannot tell apart; ``one_se`` tracks the
label-chosen scale at low densities, but over the rounds of a run it drifts below it and lost mAP on the
synthetic target (README, docs/design.md §4.3.1). With fewer than two part views ``one_se`` is ``max``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp

from .eps_grid import coverage_over_grid, k_distance_knee, per_view_agreement
from .params import AUTO_COVERAGES, AUTO_SELECTS, DEFAULT_EPS_GRID

__all__ = ["DEFAULT_EPS_GRID", "AUTO_COVERAGES", "AUTO_SELECTS", "EpsChoice", "one_se_index", "pick_index", "choose_eps"]


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
    select: str = "max"  # how ``eps`` was picked from the scores: "one_se", "max", or "knee" (the grid eps nearest it)

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


def one_se_index(per_view_scores: np.ndarray) -> int:
    """The one-standard-error rule (Breiman et al., CART) on (V, G) scores, one row per view: the smallest
    grid index whose mean score is within one standard error (over the views, at the best index) of the
    best mean. Prefers the finest of the scales the views cannot tell apart."""
    s = np.asarray(per_view_scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] < 2 or s.shape[1] < 1:
        raise ValueError(f"one_se_index needs (views >= 2, grid >= 1) scores, got shape {s.shape}")
    mean = s.mean(0)
    best = int(np.argmax(mean))
    se = s[:, best].std(ddof=1) / np.sqrt(s.shape[0])
    return int(np.flatnonzero(mean >= mean[best] - se)[0])


def pick_index(per_view: np.ndarray, scores: np.ndarray, select: str) -> Tuple[int, str]:
    """The grid index ``select`` takes from (V, G) per-view scores and their (G,) mean ``scores``, and the
    pick actually made: "one_se" (:func:`one_se_index`) needs two views and is "max" with fewer; "max" is
    the first best mean."""
    if select not in AUTO_SELECTS:
        raise ValueError(f"select {select!r}: use one of {list(AUTO_SELECTS)}")
    if select == "one_se" and np.asarray(per_view).shape[0] >= 2:
        return one_se_index(per_view), "one_se"
    return int(np.argmax(scores)), "max"  # argmax: the first of equal scores


def choose_eps(grid_labels: Mapping[str, np.ndarray], grid: Sequence[float], *,
               global_dist: Optional[sp.spmatrix] = None, min_samples: int = 4,
               camids: Optional[np.ndarray] = None, pairs: str = "all", coverage: str = "none",
               select: str = "max") -> EpsChoice:
    """The auto rule: per part view, cross-space agreement (over ``pairs`` "all" or "cross_camera" image
    pairs, :func:`per_view_agreement`) times the global clustering's ``coverage`` (:func:`coverage_over_grid`);
    the score of an eps is the mean over the views. ``select`` "max" takes the best mean (ties: the smaller
    eps), "one_se" the smallest eps within one standard error of it (:func:`one_se_index`; "max" with one
    view). ``camids`` (N,) serve every option that needs them. With a single space, the k-distance knee of
    ``global_dist`` snapped to the grid."""
    grid = [float(e) for e in grid]
    if pairs not in ("all", "cross_camera"):
        raise ValueError(f"pairs {pairs!r}: use 'all' or 'cross_camera'")
    if pairs == "cross_camera" and camids is None:
        raise ValueError("pairs='cross_camera' needs camids (one camera id per sample)")
    if select not in AUTO_SELECTS:
        raise ValueError(f"select {select!r}: use one of {list(AUTO_SELECTS)}")
    if len(grid_labels) > 1:
        views = per_view_agreement(grid_labels, camids=camids if pairs == "cross_camera" else None)
        agree = views.mean(0)
        cover = coverage_over_grid(grid_labels["global"], coverage, camids)
        per_view = views * cover
        scores = agree * cover  # the views' mean of per_view, computed as before so `max` picks bit for bit as it did
        best, picked = pick_index(per_view, scores, select)
        criterion = "cross_space_agreement" + ("" if pairs == "all" else "_cross_camera")
        if coverage != "none":
            one_cam = coverage == "multi_camera" and np.unique(np.asarray(camids)).size < 2
            criterion += "_x_" + ("clustered_share (one camera)" if one_cam else
                                  "multi_camera_share" if coverage == "multi_camera" else "clustered_share")
        return EpsChoice(eps=grid[best], grid=grid, scores=scores.tolist(), criterion=criterion,
                         index=best, labels={k: v[best] for k, v in grid_labels.items()},
                         agreement=agree.tolist(), coverage=cover.tolist(), per_view=per_view.tolist(),
                         select=picked)
    if global_dist is None:
        raise ValueError("choose_eps with one space needs global_dist for the k-distance knee")
    knee = k_distance_knee(global_dist, min_samples)
    best = int(np.argmin(np.abs(np.asarray(grid) - knee)))
    scores = (-np.abs(np.asarray(grid) - knee)).tolist()
    return EpsChoice(eps=grid[best], grid=grid, scores=scores, criterion="k_distance_knee", index=best,
                     labels={k: v[best] for k, v in grid_labels.items()}, select="knee")
