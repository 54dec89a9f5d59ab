"""DBSCAN's eps rules side by side on one set of features, scored against the true identities
(docs/design.md §4.3.1, §4.6): what ``benchmarks/benchmark_eps_rule.py`` tabulates over many cases and
``tools/cluster_quality.py --eps-rules`` prints for one model.

Each rule picks the eps of the global space's clustering from the same sparse Jaccard matrices: ``auto``
(no labels, :func:`~inclr_fastreid.pseudo_labels.eps_rule.choose_eps`), the ``oracle`` (the grid eps of best
pairwise F, chosen with the labels), the fixed eps, MMT-DBSCAN's rho rule, and the candidates that were
compared and not adopted.
"""
import time
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp

from .. import pseudo_labels as pl  # pl.compute_jaccard_distance: looked up at each call, so a test can count them
from ..pseudo_labels.clustering import cluster_dbscan, mmt_eps
from ..pseudo_labels.eps_grid import (clustering_agreement, cross_space_agreement, is_partition, k_distance_knee,
                                      labels_over_grid)
from ..pseudo_labels.eps_rule import EpsChoice, choose_eps
from ..pseudo_labels.k1_rule import k1_from_cluster_size, median_cluster_size
from ..pseudo_labels.quality import camera_pair_recall, label_quality, pairwise_prf


def agreement_at_same_eps(grid_labels: Dict[str, np.ndarray], measure: str = "ari") -> np.ndarray:
    """(G,) the candidates ``sameEps`` (``measure`` ari) and ``agreeF`` (f: pairwise F of the global clustering
    against each part's, not chance-corrected): the mean over the parts of the agreement of the global and
    part clusterings at the same grid eps; a scale where either side is no partition scores 0."""
    score = {"ari": clustering_agreement, "f": lambda a, b: pairwise_prf(a, b)[2]}[measure]
    ref = grid_labels["global"]
    parts = [v for k, v in grid_labels.items() if k != "global"]
    return np.array([np.mean([score(ref[g], p[g]) if is_partition(ref[g]) and is_partition(p[g]) else 0.0
                              for p in parts]) for g in range(ref.shape[0])])


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


def one_se_pick(per_view: np.ndarray, scores: np.ndarray) -> int:
    """The candidate ``oneSE`` (the removed ``AUTO_SELECT one_se``): the grid index :func:`one_se_index` takes
    from auto's (V, G) per-view scores; with fewer than two views, the best of the (G,) mean ``scores``, as auto."""
    if np.asarray(per_view).shape[0] >= 2:
        return one_se_index(per_view)
    return int(np.argmax(scores))


def teacher_agreement(labels1: np.ndarray, labels2: np.ndarray) -> np.ndarray:
    """(G,) per grid eps: the adjusted Rand index of the two mean teachers' clusterings at that eps (each
    (G, N) from ``labels_over_grid``; the teachers share architecture and recipe, hence one scale). A
    clustering of fewer than two clusters scores 0, as in ``cross_space_agreement``: the same-eps agreement
    of :func:`agreement_at_same_eps` with teacher 1 as the reference and teacher 2 as the one other view."""
    l1, l2 = np.asarray(labels1), np.asarray(labels2)
    if l1.shape != l2.shape or l1.ndim != 2:
        raise ValueError(f"teacher_agreement needs two (G, N) label grids of one shape, got {l1.shape} and {l2.shape}")
    return agreement_at_same_eps({"global": l1, "teacher2": l2}, "ari")


GridAtK1 = Tuple[Dict[str, sp.spmatrix], Dict[str, np.ndarray]]


def grid_at_k1(spaces: Dict[str, np.ndarray], k1: int, grid: Sequence[float], cache: Dict[int, GridAtK1], *,
               k2: int = 6, min_samples: int = 4, max_distance: float = 0.9) -> GridAtK1:
    """Every space's Jaccard matrix at ``k1`` and its DBSCAN labels over ``grid`` (space -> (G, N)), computed once
    per k1: ``cache`` (k1 -> that pair) is read first and filled, so every rule at the same k1 shares them."""
    k1 = int(k1)
    if k1 not in cache:
        dists = {name: pl.compute_jaccard_distance(x, k1, k2, max_distance=max_distance) for name, x in spaces.items()}
        cache[k1] = (dists, {name: labels_over_grid(d, grid, min_samples) for name, d in dists.items()})
    return cache[k1]


def choose_k1_eps(spaces: Dict[str, np.ndarray], k1_grid: Sequence[int], grid: Sequence[float], camids: np.ndarray, *,
                  k2: int = 6, min_samples: int = 4, max_distance: float = 0.9, coverage: str = "multi_camera",
                  known: Optional[Dict[int, GridAtK1]] = None
                  ) -> Tuple[int, EpsChoice, Dict[int, Tuple[sp.spmatrix, Dict[str, np.ndarray]]]]:
    """The auto rule over a (k1, eps) grid, no labels: each k1's Jaccard matrices and eps choice (``choose_eps``),
    then the k1 whose chosen score is the best (ties: the first in ``k1_grid``). Returns that k1, its EpsChoice and,
    per k1, the global Jaccard matrix and every space's grid labels (space -> (G, N)), to score any (k1, eps).
    ``known``: the :func:`grid_at_k1` cache (k1 -> matrices and grid labels already computed; filled here)."""
    if not k1_grid:
        raise ValueError("choose_k1_eps needs at least one k1")
    cache = {} if known is None else known
    best_k1, best_choice, by_k1 = None, None, {}
    for k1 in (int(k) for k in k1_grid):
        dists, grid_labels = grid_at_k1(spaces, k1, grid, cache, k2=k2, min_samples=min_samples,
                                        max_distance=max_distance)
        by_k1[k1] = (dists["global"], grid_labels)
        choice = choose_eps(grid_labels, grid, global_dist=dists["global"], min_samples=min_samples, camids=camids,
                            coverage=coverage)
        if best_choice is None or choice.scores[choice.index] > best_choice.scores[best_choice.index]:
            best_k1, best_choice = k1, choice
    return best_k1, best_choice, by_k1


def compare_eps_rules(spaces: Dict[str, np.ndarray], ids: np.ndarray, grid: Sequence[float], camids: np.ndarray, *,
                      k1: int = 30, k2: int = 6, min_samples: int = 4, max_distance: float = 0.9,
                      default_eps: float = 0.6, rho: float = 1.6e-3, candidates: bool = False,
                      cross_camera: bool = False, coverage: str = "multi_camera",
                      teachers: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                      k1_grid: Sequence[int] = (), k1_size: bool = False, k1_per_size: float = 1.5,
                      k1_min: int = 10) -> Dict[str, object]:
    """DBSCAN's global-space labels at the eps of each rule, with their label quality (docs/design.md §4.6).

    One sparse Jaccard matrix per space, reused by every rule: ``auto`` (no labels, every space's grid
    clusterings, ``coverage`` as INCLR.CLUSTER.AUTO_COVERAGE), ``agree`` (the agreement alone, no coverage),
    ``oracle`` (the grid eps of best pairwise F), ``fixed`` (``default_eps``) and ``mmt`` (MMT-DBSCAN's rho
    rule). Returns rule -> {"eps", "labels", "quality", "same_cam_recall", "cross_cam_recall"} (the recall of
    the identities' same- and cross-camera pairs, ``quality.camera_pair_recall``) plus the auto rule's and the
    Jaccard step's seconds; ``candidates`` adds the other label-free rules compared (``knee``, ``agreeF``,
    ``sameEps``, ``oneSE``); ``cross_camera`` adds ``auto_xcam`` (the agreement over cross-camera pairs, no coverage);
    ``teachers`` (each mean teacher's global features alone, rows as ``ids``) adds ``teachers`` and ``teachersAV``;
    ``k1_grid`` adds ``k1auto`` (:func:`choose_k1_eps`) and ``k1oracle`` (the (k1, eps) of best F), each with its "k1";
    ``k1_size`` adds ``k1size`` (K1_RULE size: auto at the k1 of auto's median cluster size at ``k1``, as the hook's
    first round) and ``k1size_oracle`` (the F-best grid eps at that k1), each with its "k1".
    """
    n = ids.size
    grid = [float(e) for e in grid]
    t0 = time.perf_counter()
    dists = {name: pl.compute_jaccard_distance(x, k1, k2, max_distance=max_distance)
             for name, x in spaces.items()}
    t_jaccard = time.perf_counter() - t0
    t0 = time.perf_counter()
    grid_labels = {name: labels_over_grid(d, grid, min_samples) for name, d in dists.items()}
    choice = choose_eps(grid_labels, grid, global_dist=dists["global"], min_samples=min_samples, camids=camids,
                        coverage=coverage)
    t_auto = time.perf_counter() - t0
    f_grid = np.array([pairwise_prf(lab, ids)[2] for lab in grid_labels["global"]])
    one = len(grid_labels) == 1  # one space: every label-free rule is the k-distance knee (choose_eps)
    agree = choice.eps if one else grid[int(np.argmax(cross_space_agreement(grid_labels)))]
    eps = {"auto": choice.eps, "agree": agree, "oracle": grid[int(np.argmax(f_grid))],
           "fixed": float(default_eps), "mmt": mmt_eps(dists["global"], n, rho)}
    if cross_camera:
        xcam = None if one else cross_space_agreement(grid_labels, camids=camids)
        eps["auto_xcam"] = choice.eps if xcam is None else grid[int(np.argmax(xcam))]
    if candidates:
        eps["knee"] = k_distance_knee(dists["global"], min_samples)
        if len(grid_labels) > 1:  # cross-space agreement by pairwise F instead of ARI (not chance-corrected)
            eps["agreeF"] = grid[int(np.argmax(agreement_at_same_eps(grid_labels, "f")))]
            eps["sameEps"] = grid[int(np.argmax(agreement_at_same_eps(grid_labels, "ari")))]
            eps["oneSE"] = grid[one_se_pick(np.asarray(choice.per_view), np.asarray(choice.scores))]
    if teachers is not None:
        t_labels = [labels_over_grid(pl.compute_jaccard_distance(t, k1, k2, max_distance=max_distance), grid, min_samples)
                    for t in teachers]
        t_agree = teacher_agreement(*t_labels)
        eps["teachers"] = grid[int(np.argmax(t_agree))]
        eps["teachersAV"] = grid[int(np.argmax(t_agree * np.asarray(choice.scores)))]
    out: Dict[str, object] = {"n": n, "auto_s": t_auto, "jaccard_s": t_jaccard, "choice": choice.as_record(),
                              "f_grid": f_grid.tolist()}
    if teachers is not None:
        out["teacher_agreement"] = t_agree.tolist()

    def scored(dist: sp.spmatrix, e: float) -> Dict[str, object]:
        """One rule's global labels at ``e`` on ``dist``, their quality and same/cross-camera pair recall."""
        # mmt can give exactly 0 (the m smallest pairs all have identical supports); DBSCAN needs eps > 0
        labels = cluster_dbscan(dist, max(e, 1e-9), min_samples)
        res: Dict[str, object] = {"eps": float(e), "labels": labels, "quality": label_quality(labels, ids)}
        res["same_cam_recall"], res["cross_cam_recall"] = camera_pair_recall(labels, ids, camids)
        return res

    for rule, e in eps.items():
        out[rule] = scored(dists["global"], e)
    cache: Dict[int, GridAtK1] = {int(k1): (dists, grid_labels)}  # k1size and the k1 grid: each k1 computed once
    if k1_size:
        size = median_cluster_size(out["auto"]["labels"])
        k1s = k1_from_cluster_size(size, k1_per_size, k1_min, k1)
        d_s, gl_s = grid_at_k1(spaces, k1s, grid, cache, k2=k2, min_samples=min_samples, max_distance=max_distance)
        ch_s = choose_eps(gl_s, grid, global_dist=d_s["global"], min_samples=min_samples, camids=camids,
                          coverage=coverage)
        f_s = [pairwise_prf(lab, ids)[2] for lab in gl_s["global"]]
        for rule, e in (("k1size", ch_s.eps), ("k1size_oracle", grid[int(np.argmax(f_s))])):
            out[rule] = dict(scored(d_s["global"], e), k1=k1s, median_size=size)
    if k1_grid:
        k1_pick, k1_choice, by_k1 = choose_k1_eps(spaces, k1_grid, grid, camids, k2=k2, min_samples=min_samples,
                                                  max_distance=max_distance, coverage=coverage, known=cache)
        f_joint = {(k, g): pairwise_prf(lab, ids)[2] for k, (_, ls) in by_k1.items() for g, lab in enumerate(ls["global"])}
        best_f = max(f_joint.values())  # the first (k1, eps) of best F, in grid order: as the oracle's argmax
        k1_or, g_or = next(kg for kg, f in f_joint.items() if f == best_f)
        for rule, (k, g) in (("k1auto", (k1_pick, k1_choice.index)), ("k1oracle", (k1_or, g_or))):
            out[rule] = dict(scored(by_k1[k][0], grid[g]), k1=k)
    return out
