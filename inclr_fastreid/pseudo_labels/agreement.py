"""LGMR (local/global mutual refinement), the label side: cross-agreement and global-label refinement.

docs/design.md §4.4. The cross-agreement C_p(i) in [0, 1] says how far the global view and part p
agree about sample i. Its evidence:
- the *neighbour overlap*: Jaccard overlap of i's k nearest neighbours (self excluded) in the
  global space and in part space p, as PPLR's ``compute_cross_agreement`` (yoonkicho/PPLR
  ``examples/train_pplr.py``: |N_g(i) ∩ N_p(i)| / |N_g(i) ∪ N_p(i)|);
- the *cluster overlap*: Jaccard overlap of i's global cluster and its part-p cluster.
How they combine is a mode (``INCLR.LGMR.AGREEMENT``, :data:`AGREEMENTS`): ``neighbour`` alone
(PPLR; the default) or the ``mean`` of both (an option; the paper leaves it open). A new mode is
one function registered with :func:`agreement_mode`. The loss side lives in ``modeling/losses/lgmr.py``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Set

import numpy as np

from .clustering import relabel_by_first_occurrence
from .knn import as_float32_features, knn_search
from .registries import AGREEMENTS

__all__ = ["AGREEMENTS", "READS_PART_LABELS", "agreement_mode", "neighbour_overlap", "knn_overlap", "cluster_overlap",
           "cross_agreement", "refine_global_labels"]

#: a mode (registered in AGREEMENTS under its name): f(global_knn (N, k), part_knn (N, k), global_labels (N,),
#: part_labels (N,)) -> (N,) in [0, 1]
AgreementMode = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
#: the modes that read the part spaces' cluster labels; under the others the part spaces need only their kNN
#: lists, and generate_pseudo_labels does not cluster them
READS_PART_LABELS: Set[str] = set()


def agreement_mode(name: str, *, reads_part_labels: bool = True) -> Callable[[AgreementMode], AgreementMode]:
    """Register a cross-agreement mode under ``name`` (a value of ``INCLR.LGMR.AGREEMENT``);
    ``reads_part_labels=False`` when it ignores its ``part_labels`` argument (the part spaces are then not clustered)."""
    def register(fn: AgreementMode) -> AgreementMode:
        AGREEMENTS.register(name)(fn)
        if reads_part_labels:
            READS_PART_LABELS.add(name)
        else:
            READS_PART_LABELS.discard(name)
        return fn

    return register


def neighbour_overlap(idx_a: np.ndarray, idx_b: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Row-wise Jaccard overlap |A_i ∩ B_i| / |A_i ∪ B_i| of two (N, k) neighbour-index arrays (distinct ids per row)."""
    idx_a = np.asarray(idx_a)
    idx_b = np.asarray(idx_b)
    if idx_a.ndim != 2 or idx_a.shape != idx_b.shape:
        raise ValueError(f"neighbour lists must both be (N, k), got {idx_a.shape} and {idx_b.shape}")
    n, k = idx_a.shape
    out = np.empty(n, dtype=np.float32)
    for s in range(0, n, chunk):
        a = idx_a[s:s + chunk]
        b = idx_b[s:s + chunk]
        inter = (a[:, :, None] == b[:, None, :]).any(axis=2).sum(axis=1)
        out[s:s + chunk] = inter / (2 * k - inter)
    return out


def knn_overlap(global_feats: Any, part_feats: Any, k: int = 20) -> np.ndarray:
    """(N,) float32: Jaccard overlap of i's k nearest neighbours (self excluded) in the global and the part space.

    PPLR's cross-agreement score (one part). 1 = same neighbour set, 0 = disjoint.
    """
    g = as_float32_features(global_feats, "global_feats")
    p = as_float32_features(part_feats, "part_feats")
    if g.shape[0] != p.shape[0]:
        raise ValueError(f"global_feats and part_feats must have the same N, got {g.shape[0]} and {p.shape[0]}")
    _, ig = knn_search(g, k, exclude_self=True)
    _, ip = knn_search(p, k, exclude_self=True)
    return neighbour_overlap(ig, ip)


def cluster_overlap(global_labels: Any, part_labels: Any) -> np.ndarray:
    """(N,) float32: |G(i) ∩ P(i)| / |G(i) ∪ P(i)| of i's global cluster G(i) and part cluster P(i).

    0 where i is an outlier (-1) in either labelling. O(N): |G ∩ P| is the count of i's
    (global id, part id) pair, |G ∪ P| = |G| + |P| - |G ∩ P|.
    """
    g = np.asarray(global_labels)
    p = np.asarray(part_labels)
    if g.ndim != 1 or g.shape != p.shape:
        raise ValueError(f"label arrays must both be 1-D of the same length, got {g.shape} and {p.shape}")
    out = np.zeros(g.shape[0], dtype=np.float32)
    ok = (g >= 0) & (p >= 0)
    if not ok.any():
        return out
    g_ok = g[ok].astype(np.int64)
    p_ok = p[ok].astype(np.int64)
    g_size = np.bincount(g[g >= 0].astype(np.int64))[g_ok]
    p_size = np.bincount(p[p >= 0].astype(np.int64))[p_ok]
    _, inv, pair_count = np.unique(np.stack([g_ok, p_ok], axis=1), axis=0, return_inverse=True,
                                   return_counts=True)
    inter = pair_count[inv.reshape(-1)]
    out[ok] = inter / (g_size + p_size - inter)
    return out


@agreement_mode("mean")
def _mean_of_overlaps(global_knn: np.ndarray, part_knn: np.ndarray, global_labels: np.ndarray,
                      part_labels: np.ndarray) -> np.ndarray:
    """Equal-weight mean of the neighbour and the cluster overlap: either evidence alone gives at most 0.5."""
    return 0.5 * (neighbour_overlap(global_knn, part_knn) + cluster_overlap(global_labels, part_labels))


@agreement_mode("neighbour", reads_part_labels=False)
def _neighbour_overlap_only(global_knn: np.ndarray, part_knn: np.ndarray, global_labels: np.ndarray,
                            part_labels: np.ndarray) -> np.ndarray:
    """PPLR's score: the neighbour overlap alone."""
    return neighbour_overlap(global_knn, part_knn)


def cross_agreement(global_feats: Any, part_feats_list: Sequence[Any], global_labels: Any,
                    part_labels_list: Sequence[Any], k: int = 20, *,
                    global_knn: Optional[np.ndarray] = None,
                    part_knn_list: Optional[Sequence[np.ndarray]] = None, mode: str = "neighbour") -> np.ndarray:
    """(N, P) float32 in [0, 1]: C_p(i) for every part, combined per ``mode`` (docs/design.md §4.4).

    ``global_knn`` / ``part_knn_list``: optional precomputed (N, >=k) neighbour indices *without*
    self, to skip the searches. ``part_labels_list`` may be empty for a mode not in :data:`READS_PART_LABELS`.
    """
    AGREEMENTS.check(mode)
    n_parts = len(part_feats_list)
    if n_parts == 0:
        raise ValueError("part_feats_list is empty: cross-agreement needs at least one part")
    if not part_labels_list and mode not in READS_PART_LABELS:
        part_labels_list = [None] * n_parts  # the mode ignores them
    if len(part_labels_list) != n_parts:
        raise ValueError(f"{n_parts} part feature sets but {len(part_labels_list)} part labellings")
    if global_knn is None:
        global_knn = knn_search(global_feats, k, exclude_self=True)[1]
    n = global_knn.shape[0]
    out = np.empty((n, n_parts), dtype=np.float32)
    for p in range(n_parts):
        if part_knn_list is not None:
            ip = part_knn_list[p]
        else:
            ip = knn_search(part_feats_list[p], k, exclude_self=True)[1]
        if ip.shape[0] != n:
            raise ValueError(f"part {p + 1} has {ip.shape[0]} samples, global has {n}")
        out[:, p] = AGREEMENTS[mode](global_knn[:, :k], ip[:, :k], global_labels, part_labels_list[p])
    return out


def refine_global_labels(global_labels: Any, agreement: Any, min_agreement: float,
                         min_cluster_size: int = 2) -> np.ndarray:
    """Local -> global refinement of the hard labels (docs/design.md §4.4): unsupported samples become outliers.

    Sample i becomes -1 when no part supports its global cluster, ``max_p C_p(i) < min_agreement``
    (strict, so ``min_agreement=0`` keeps everyone). Clusters left with fewer than
    ``min_cluster_size`` members (default 2: a one-image class gives no positive pair) also become
    -1; the rest are renumbered 0..K'-1 by first occurrence.
    """
    g = np.asarray(global_labels)
    a = np.asarray(agreement, dtype=np.float32)
    if g.ndim != 1:
        raise ValueError(f"global_labels must be 1-D, got shape {g.shape}")
    if a.ndim != 2 or a.shape[0] != g.shape[0]:
        raise ValueError(f"agreement must be (N, P) with N={g.shape[0]}, got shape {a.shape}")
    if not np.isfinite(min_agreement):
        raise ValueError(f"min_agreement must be finite, got {min_agreement}")
    out = g.astype(np.int64).copy()
    out[out < 0] = -1
    if a.shape[1] > 0:
        out[a.max(axis=1) < min_agreement] = -1
    valid = out >= 0
    if valid.any():
        sizes = np.bincount(out[valid])
        out[valid & (sizes[np.maximum(out, 0)] < min_cluster_size)] = -1
    return relabel_by_first_occurrence(out)
