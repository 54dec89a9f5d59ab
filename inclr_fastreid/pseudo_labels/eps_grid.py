"""The eps grid of ``INCLR.CLUSTER.EPS_RULE auto`` scored without labels (docs/design.md §4.3.1): DBSCAN at
each grid eps as graph components on a space's sparse Jaccard matrix, the agreement (adjusted Rand index) of
the global clustering with each part's, the coverage that weights it, and the k-distance knee (the fallback
without part spaces). Nothing N x N: pair counts from label vectors and stored pairs only. The choice from
these scores is :mod:`.eps_rule`'s.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import scipy.sparse as sp

from .clustering import relabel_by_first_occurrence
from .params import AUTO_COVERAGES
from .quality import count_pairs, outliers_as_singletons, pairs_sharing

__all__ = ["dbscan_by_components", "labels_over_grid", "clustering_agreement", "is_partition", "per_view_agreement",
           "cross_space_agreement", "multi_camera_share", "clustered_share", "coverage_over_grid", "k_distance",
           "k_distance_knee"]


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
    parts' scale). With ``camids`` the agreement counts cross-camera pairs only (a measure that
    ``tools/benchmark_eps_rule.py --cross-camera`` reports; the auto rule counts all pairs). A clustering with
    fewer than two clusters (at a too-large eps, one component chaining everything) is no partition of the
    identities: it scores 0 and corroborates nothing, although two of them agree exactly.

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
    :func:`clustered_share` instead), ``clustered`` = :func:`clustered_share`."""
    if coverage not in AUTO_COVERAGES:
        raise ValueError(f"coverage {coverage!r}: use one of {list(AUTO_COVERAGES)}")
    g = np.asarray(global_labels)
    if coverage == "multi_camera":
        if camids is None:
            raise ValueError("coverage 'multi_camera' needs camids (one camera id per sample)")
        if np.unique(np.asarray(camids)).size >= 2:
            return np.array([multi_camera_share(lab, camids) for lab in g])
    return np.array([clustered_share(lab) for lab in g])
