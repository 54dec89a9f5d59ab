"""Pseudo-label quality against true identities (docs/design.md §4.6).

Convention everywhere: a predicted outlier (-1) is its own singleton cluster (it pairs with
nobody), so clustering few samples cannot look precise for free. True ids are arbitrary integers.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

__all__ = ["pairwise_prf", "label_quality", "pseudo_label_correct", "credibility_auroc",
           "outliers_as_singletons", "camera_pair_recall"]


def _check_pair(pred: Any, true: Any) -> Tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    true = np.asarray(true)
    if pred.ndim != 1 or pred.shape != true.shape:
        raise ValueError(f"pred and true must be 1-D of the same length, got {pred.shape} and {true.shape}")
    for name, a in (("pred", pred), ("true", true)):
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} labels must be integers, got dtype {a.dtype}")
    return pred.astype(np.int64), true.astype(np.int64)


def outliers_as_singletons(pred: Any) -> np.ndarray:
    """Copy of ``pred`` where every -1 gets a fresh id of its own (for NMI/ARI over all samples)."""
    pred = np.asarray(pred, dtype=np.int64).copy()
    out = pred < 0
    start = int(pred.max()) + 1 if (~out).any() else 0
    pred[out] = start + np.arange(int(out.sum()))
    return pred


def count_pairs(counts: np.ndarray) -> int:
    """Number of unordered pairs within groups of the given sizes: sum of C(c, 2)."""
    counts = counts.astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def pairs_sharing(*cols: np.ndarray) -> int:
    """Unordered pairs of samples equal in every one of the (N,) non-negative int64 columns ``cols``
    (one mixed-radix joint code per sample, then :func:`count_pairs`; linear in N, nothing N x N)."""
    code = np.zeros_like(cols[0])
    for c in cols:
        code = code * (int(c.max()) + 1) + c
    return count_pairs(np.unique(code, return_counts=True)[1])


def pairwise_prf(pred: Any, true: Any) -> Tuple[float, float, float]:
    """Pairwise precision, recall, F-score of "same predicted cluster" against "same true id".

    Counted from the contingency table (O(N log N)), not over the N^2 pairs. Outliers are
    singletons. A ratio whose denominator is 0 (no predicted / no true pairs) is 0.
    """
    pred, true = _check_pair(pred, true)
    keep = pred >= 0
    _, true_inv = np.unique(true, return_inverse=True)
    true_pairs = count_pairs(np.bincount(true_inv))
    pred_pairs = count_pairs(np.unique(pred[keep], return_counts=True)[1]) if keep.any() else 0
    if keep.any():
        both = np.stack([pred[keep], true_inv.reshape(-1)[keep]], axis=1)
        tp = count_pairs(np.unique(both, axis=0, return_counts=True)[1])
    else:
        tp = 0
    precision = tp / pred_pairs if pred_pairs else 0.0
    recall = tp / true_pairs if true_pairs else 0.0
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return float(precision), float(recall), float(f)


def label_quality(pred: Any, true: Any) -> Dict[str, float]:
    """K, outlier share, pairwise P/R/F, NMI and ARI of pseudo labels ``pred`` (-1 = outlier) vs. ``true`` ids.

    NMI/ARI (scikit-learn) are over *all* samples with each outlier a singleton cluster, so that
    discarding hard samples is not rewarded.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    pred, true = _check_pair(pred, true)
    n = pred.shape[0]
    if n == 0:
        raise ValueError("label_quality needs at least one sample")
    p, r, f = pairwise_prf(pred, true)
    full = outliers_as_singletons(pred)
    num_outliers = int((pred < 0).sum())
    return {
        "num_clusters": int(np.unique(pred[pred >= 0]).shape[0]),
        "num_outliers": num_outliers,
        "outlier_ratio": num_outliers / n,
        "pairwise_precision": p,
        "pairwise_recall": r,
        "pairwise_fscore": f,
        "nmi": float(normalized_mutual_info_score(true, full)),
        "ari": float(adjusted_rand_score(true, full)),
    }


def pseudo_label_correct(pred: Any, true: Any) -> np.ndarray:
    """(N,) bool: i's pseudo label is correct when the majority true id of i's cluster is i's own.

    Ties go to the smallest true id. Outliers (-1) carry no label and are False: mask them out
    before scoring credibility on them.
    """
    pred, true = _check_pair(pred, true)
    out = np.zeros(pred.shape[0], dtype=bool)
    keep = pred >= 0
    if not keep.any():
        return out
    _, pred_inv = np.unique(pred[keep], return_inverse=True)
    _, true_inv = np.unique(true[keep], return_inverse=True)
    pred_inv = pred_inv.reshape(-1)
    true_inv = true_inv.reshape(-1)
    # sort by (cluster, true id) and count runs: contingency entries without a K x T table
    order = np.lexsort((true_inv, pred_inv))
    pc, tc = pred_inv[order], true_inv[order]
    start = np.ones(order.shape[0], dtype=bool)
    start[1:] = (pc[1:] != pc[:-1]) | (tc[1:] != tc[:-1])
    run_starts = np.flatnonzero(start)
    run_counts = np.diff(np.append(run_starts, order.shape[0]))
    run_pred, run_true = pc[run_starts], tc[run_starts]
    # majority per cluster: among runs of a cluster, largest count, ties -> smallest true id
    by = np.lexsort((run_true, -run_counts, run_pred))
    first = np.ones(by.shape[0], dtype=bool)
    first[1:] = run_pred[by][1:] != run_pred[by][:-1]
    majority = np.empty(int(pred_inv.max()) + 1, dtype=np.int64)
    majority[run_pred[by][first]] = run_true[by][first]
    out[np.flatnonzero(keep)] = majority[pred_inv] == true_inv
    return out


def credibility_auroc(credibility: Any, correct: Any) -> Optional[float]:
    """AUROC of the IGMO credibility w_i (Eq. 7) for telling correct from wrong pseudo labels.

    None when all labels are correct or all wrong (AUROC undefined). 0.5 = uninformative.
    """
    from sklearn.metrics import roc_auc_score

    c = np.asarray(credibility, dtype=np.float64).reshape(-1)
    y = np.asarray(correct).reshape(-1)
    if c.shape != y.shape:
        raise ValueError(f"credibility and correct must have the same length, got {c.shape} and {y.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("credibility has NaN/inf values")
    y = y.astype(bool)
    if y.all() or not y.any():
        return None
    return float(roc_auc_score(y, c))


def camera_pair_recall(pred: Any, true_ids: Any, camids: Any) -> Tuple[float, float]:
    """Recall of the true identities' same-camera pairs and of their cross-camera pairs: the share that
    share a pseudo label (outliers share none). Cross-camera recall is what a cross-camera evaluation
    rewards (docs/design.md §4.3.1). From group counts, linear in N (no pair loop, nothing N x N)."""
    pred, ids, cams = (np.unique(np.asarray(a).reshape(-1), return_inverse=True)[1].reshape(-1).astype(np.int64)
                       for a in (outliers_as_singletons(pred), true_ids, camids))
    if not pred.shape == ids.shape == cams.shape:
        raise ValueError(f"pred, true_ids and camids must have one entry per sample, got {pred.shape}, {ids.shape}, "
                         f"{cams.shape}")
    same_tot, same_got = pairs_sharing(ids, cams), pairs_sharing(pred, ids, cams)
    cross_tot, cross_got = pairs_sharing(ids) - same_tot, pairs_sharing(pred, ids) - same_got
    return same_got / max(same_tot, 1), cross_got / max(cross_tot, 1)
