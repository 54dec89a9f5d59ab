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

from .clustering import relabel_by_first_occurrence
from .params import AUTO_COVERAGES, AUTO_SELECTS, DEFAULT_EPS_GRID
from .quality import count_pairs, outliers_as_singletons, pairs_sharing

__all__ = ["DEFAULT_EPS_GRID", "AUTO_COVERAGES", "AUTO_SELECTS", "EpsChoice", "dbscan_by_components", "labels_over_grid",
           "clustering_agreement", "is_partition", "per_view_agreement", "cross_space_agreement", "multi_camera_share", "clustered_share",
           "coverage_over_grid", "one_se_index", "pick_index", "k_distance", "k_distance_knee", "choose_eps"]



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


def dbscan_by_components(dist: sp.spmatrix, eps: float, min_samples: int) -> np.ndarray:
    """DBSCAN on a sparse distance as graph components: (N,) int64 labels, -1 = outlier.

    Core points (>= ``min_samples`` stored neighbours within ``eps``, itself included, as
    scikit-learn counts) joined by core-core edges within ``eps`` form the clusters, exactly as in
    :func:`~.clustering.cluster_dbscan`; a border point joins the cluster of its first core
    neighbour in column order (scikit-learn: of the first cluster that reaches it, so a border
    point between two clusters may differ). Linear in the stored pairs, for scoring a grid cheaply.
    """
    from scipy.sparse.csgraph import connected_components

    d = sp.csr_matrix(dist)
    n = d.shape[0]
    rows = np.repeat(np.arange(n), np.diff(d.indptr))
    keep = (d.data <= eps) & (d.indices != rows)
    adj = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.int8), (rows[keep], d.indices[keep])), shape=(n, n))
    core = np.diff(adj.indptr) + 1 >= int(min_samples)
    labels = np.full(n, -1, dtype=np.int64)
    core_idx = np.flatnonzero(core)
    if core_idx.size == 0:
        return labels
    _, comp = connected_components(adj[core_idx][:, core_idx], directed=False)
    labels[core_idx] = comp
    border = adj[~core][:, core_idx]  # non-core rows, core columns
    has = np.diff(border.indptr) > 0
    border_idx = np.flatnonzero(~core)[has]
    labels[border_idx] = comp[border.indices[border.indptr[:-1][has]]]
    return relabel_by_first_occurrence(labels)


def labels_over_grid(dist: sp.spmatrix, grid: Sequence[float], min_samples: int) -> np.ndarray:
    """(G, N) int64: DBSCAN's clusters (:func:`dbscan_by_components`) of the sparse ``dist`` at each eps of ``grid``."""
    d = sp.csr_matrix(dist)
    return np.stack([dbscan_by_components(d, float(e), int(min_samples)) for e in grid]) if len(grid) else \
        np.zeros((0, d.shape[0]), dtype=np.int64)


def _dense_ids(labels: np.ndarray) -> np.ndarray:
    """Labels with each outlier a singleton, renumbered 0..K-1 (so joint codes fit in int64)."""
    return np.unique(outliers_as_singletons(labels), return_inverse=True)[1].reshape(-1).astype(np.int64)


def _co_clustered(codes: np.ndarray, cams: Optional[np.ndarray]) -> int:
    """Pairs of samples sharing a code (a cluster id, or a joint id); with ``cams``, only the pairs whose
    two samples come from different cameras (all pairs minus the same-camera ones)."""
    pairs = pairs_sharing(codes)
    return pairs if cams is None else pairs - pairs_sharing(codes, cams)


def _ari(a: np.ndarray, b: np.ndarray, cams: Optional[np.ndarray] = None) -> float:
    """Adjusted Rand index of two dense-id clusterings (:func:`_dense_ids`), from the pair counts.

    With ``cams`` (dense camera ids), every count is restricted to the cross-camera pairs: the index
    of agreement on which images of *different* cameras belong together (the chance term then treats
    the cross-camera pairs as the population: an approximation of the permutation model, exact when
    each image is its own camera)."""
    n = a.shape[0]
    joint = _co_clustered(a * (int(b.max()) + 1) + b, cams)
    rows, cols = _co_clustered(a, cams), _co_clustered(b, cams)
    total = n * (n - 1) / 2.0 - (count_pairs(np.bincount(cams)) if cams is not None else 0)
    if rows == 0 or cols == 0:  # one side joins no (cross-camera) pair: nothing to agree on
        return 0.0
    expected = rows * cols / total
    top = (rows + cols) / 2.0 - expected
    if top == 0:  # both one cluster holding everything
        return 1.0
    return float((joint - expected) / top)


def is_partition(labels: np.ndarray) -> bool:
    """At least two clusters (outliers, label < 0, not counted): a clustering that can agree with another
    about identities. One component chaining everything agrees exactly with any other such component and
    says nothing, so every agreement here scores it 0."""
    lab = np.asarray(labels)
    return np.unique(lab[lab >= 0]).size >= 2


def _dense_cams(camids: Optional[np.ndarray], n: int) -> Optional[np.ndarray]:
    if camids is None:
        return None
    cams = np.asarray(camids).reshape(-1)
    if cams.shape[0] != n:
        raise ValueError(f"camids must have one entry per sample ({n}), got {cams.shape[0]}")
    return np.unique(cams, return_inverse=True)[1].reshape(-1).astype(np.int64)


def clustering_agreement(a: np.ndarray, b: np.ndarray, camids: Optional[np.ndarray] = None) -> float:
    """Adjusted Rand index of two clusterings of the same samples, each outlier a singleton.

    Chance-corrected, so two clusterings that each lump most samples together score near 0 unless
    they lump the *same* samples; all-outliers on both sides scores 0 (nothing to agree on), not 1.
    With ``camids``, only cross-camera pairs count (:func:`_ari`): clusters that never cross a camera
    add nothing to agree on.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"clusterings must be 1-D of the same length, got {a.shape} and {b.shape}")
    if not ((a >= 0).any() or (b >= 0).any()):
        return 0.0
    return _ari(_dense_ids(a), _dense_ids(b), _dense_cams(camids, a.shape[0]))


def per_view_agreement(grid_labels: Mapping[str, np.ndarray], reference: str = "global",
                       camids: Optional[np.ndarray] = None) -> np.ndarray:
    """(V, G), one row per space other than ``reference`` (a view), one column per eps of the grid: how well
    the ``reference`` space's clustering at that eps is corroborated by the view, at the grid eps that suits
    the view best: the largest :func:`clustering_agreement` over the view's grid (the spaces' scales differ:
    a noisier part needs a larger eps to form the same clusters, so comparing at one shared eps favours the
    parts' scale). With ``camids`` the agreement counts cross-camera pairs only (``INCLR.CLUSTER.AUTO_PAIRS
    cross_camera``). A clustering with fewer than two clusters (at a too-large eps, one component chaining
    everything) is no partition of the identities: it scores 0 and corroborates nothing, although two of
    them agree exactly.

    ``grid_labels``: space name -> (G, N) labels from :func:`labels_over_grid` on the same grid.
    """
    ref = grid_labels[reference]
    others = [v for k, v in grid_labels.items() if k != reference]
    if not others:
        raise ValueError("the cross-space agreement needs a second feature space (parts)")
    cams = _dense_cams(camids, ref.shape[1])
    ref_ids = [_dense_ids(r) if is_partition(r) else None for r in ref]
    scores = np.zeros((len(others), ref.shape[0]))
    for v, other in enumerate(others):
        other_ids = [_dense_ids(o) if is_partition(o) else None for o in other]
        for g, a in enumerate(ref_ids):
            if a is not None:
                scores[v, g] = max((_ari(a, b, cams) for b in other_ids if b is not None), default=0.0)
    return scores


def cross_space_agreement(grid_labels: Mapping[str, np.ndarray], reference: str = "global",
                          camids: Optional[np.ndarray] = None) -> np.ndarray:
    """(G,) per eps of the grid: the mean over the other spaces of :func:`per_view_agreement`."""
    return per_view_agreement(grid_labels, reference, camids).mean(0)


def k_distance(dist: sp.spmatrix, k: int) -> np.ndarray:
    """(N,) distance of each sample to its k-th nearest *other* sample in the sparse ``dist``;
    a pair not stored counts as 1 (the Jaccard distance's maximum)."""
    d = sp.csr_matrix(dist)
    n = d.shape[0]
    out = np.ones(n, dtype=np.float64)
    indptr, indices, data = d.indptr, d.indices, d.data
    for i in range(n):
        s, e = indptr[i], indptr[i + 1]
        row = data[s:e][indices[s:e] != i]
        if row.size >= k:
            out[i] = np.partition(row, k - 1)[k - 1]
    return out


def k_distance_knee(dist: sp.spmatrix, min_samples: int) -> float:
    """The DBSCAN authors' eps: the knee of the sorted (min_samples-1)-distance curve, taken as the
    point farthest below the chord from its first to its last point (Kneedle), on the stored scale."""
    kd = np.sort(k_distance(dist, max(1, int(min_samples) - 1)))
    kd = kd[kd < 1.0] if (kd < 1.0).sum() >= 3 else kd
    if kd.size < 3:
        return float(kd[-1]) if kd.size else 1.0
    x = np.linspace(0.0, 1.0, kd.size)
    y = (kd - kd[0]) / max(kd[-1] - kd[0], 1e-12)
    return float(kd[int(np.argmax(x - y))])


def multi_camera_share(labels: np.ndarray, camids: np.ndarray) -> float:
    """Share of all samples that sit in a cluster whose members come from at least two cameras, the
    largest cluster excepted (outliers and one-camera clusters count as not covered; so does the
    largest cluster, which at a too-large eps is the component that chains everything together)."""
    lab = np.asarray(labels).reshape(-1)
    cams = _dense_cams(camids, lab.shape[0])
    inside = lab >= 0
    if not inside.any():
        return 0.0
    width = int(cams.max()) + 1
    cluster_of_pair = np.unique(lab[inside] * width + cams[inside]) // width  # one entry per (cluster, camera)
    multi = np.bincount(cluster_of_pair, minlength=int(lab.max()) + 1) >= 2
    sizes = np.bincount(lab[inside])
    multi[int(np.argmax(sizes))] = False
    return float(sizes[multi].sum() / lab.shape[0])


def clustered_share(labels: np.ndarray) -> float:
    """Share of samples that are not DBSCAN outliers, the largest cluster excepted (as :func:`multi_camera_share`)."""
    lab = np.asarray(labels).reshape(-1)
    inside = lab >= 0
    if not inside.any():
        return 0.0
    return float((inside.sum() - np.bincount(lab[inside]).max()) / lab.shape[0])


def coverage_over_grid(global_labels: np.ndarray, coverage: str = "multi_camera",
                       camids: Optional[np.ndarray] = None) -> np.ndarray:
    """(G,) the weight of each grid eps's global clustering (``INCLR.CLUSTER.AUTO_COVERAGE``):
    ``multi_camera`` = :func:`multi_camera_share` (needs ``camids``; with a single camera in the data,
    :func:`clustered_share` instead), ``clustered`` = :func:`clustered_share`, ``none`` = 1."""
    if coverage not in AUTO_COVERAGES:
        raise ValueError(f"coverage {coverage!r}: use one of {list(AUTO_COVERAGES)}")
    g = np.asarray(global_labels)
    if coverage == "none":
        return np.ones(g.shape[0])
    if coverage == "multi_camera":
        if camids is None:
            raise ValueError("coverage 'multi_camera' needs camids (one camera id per sample)")
        if np.unique(np.asarray(camids)).size >= 2:
            return np.array([multi_camera_share(lab, camids) for lab in g])
    return np.array([clustered_share(lab) for lab in g])


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
