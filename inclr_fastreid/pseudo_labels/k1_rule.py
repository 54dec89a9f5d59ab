"""The rules of ``INCLR.CLUSTER.K1_RULE``: the k-reciprocal neighbourhood k1 as configured (``fixed``) or from the
target's density, without labels (``size``, docs/design.md §4.3.2).

The Jaccard distance of Zhong et al. compares k1-neighbourhoods. When k1 is much larger than an
identity's number of images, every neighbourhood is mostly other identities and the F-best eps moves
with the density (README, "The neighbourhood size k1"). ``INCLR.CLUSTER.K1_RULE size`` therefore sets
k1 to a multiple of the typical cluster size of a first clustering at the configured ``K1``:

    k1 = clip(round(K1_PER_SIZE * median cluster size), K1_MIN, K1)

The median over clusters, not over images, so one chained giant cluster does not move it.
``K1_PER_SIZE`` 1.5 sits among the references' own ratios of k1 to the images per identity of the sets
they were set on (MMT k1 20 / Market's 17.2 = 1.2, SpCL / PPLR k1 30 / 17.2 = 1.7 and / Duke's 23.5 = 1.3).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from .params import ClusterParams
from .registries import K1_RULES
from .scale import ScaleChoice, ScaleRule

__all__ = ["K1Rule", "FixedK1", "SizeK1", "median_cluster_size", "k1_from_cluster_size"]


def median_cluster_size(labels: Any) -> float:
    """Median number of images per cluster of ``labels`` (-1 = outlier, not a cluster); 0 if no cluster."""
    lab = np.asarray(labels).ravel()
    sizes = np.bincount(lab[lab >= 0]) if (lab >= 0).any() else np.zeros(0, np.int64)
    sizes = sizes[sizes > 0]
    return float(np.median(sizes)) if sizes.size else 0.0


def k1_from_cluster_size(size: float, per_size: float, k1_min: int, k1_max: int) -> int:
    """``clip(round(per_size * size), k1_min, k1_max)`` (round half to even, as numpy); §4.3.2. A size of 0 (the
    first clustering found no cluster, so there is no density to read) keeps ``k1_max``, the configured K1."""
    if not (0 < k1_min <= k1_max):
        raise ValueError(f"k1_from_cluster_size needs 0 < k1_min <= k1_max, got {k1_min} and {k1_max}")
    if per_size <= 0:
        raise ValueError(f"per_size must be > 0, got {per_size}")
    if size <= 0:
        return int(k1_max)
    return int(np.clip(int(np.around(per_size * float(size))), int(k1_min), int(k1_max)))


class K1Rule(ScaleRule):
    """A value of ``INCLR.CLUSTER.K1_RULE``: the round's k1 (:data:`~.registries.K1_RULES`)."""

    scale = "k1"

    def choose(self, p: ClusterParams, first_pass: Callable[[], Any]) -> ScaleChoice:
        """This round's k1. ``first_pass()`` clusters the round at ``p.k1`` (the global space at the eps of its
        rule, LGMR off) and returns its PseudoLabels, for a rule that reads a clustering."""
        raise NotImplementedError


class FixedK1(K1Rule):
    """``fixed``: ``INCLR.CLUSTER.K1`` every round (SpCL / PPLR 30, MMT 20), or the k1 a caller gives."""

    name, fixed = "fixed", True

    def choose(self, p: ClusterParams, first_pass: Callable[[], Any]) -> ScaleChoice:
        return ScaleChoice(int(p.k1))


class SizeK1(K1Rule):
    """``size`` (docs/design.md §4.3.2): k1 from the median cluster size of a first clustering at ``K1``
    (:func:`k1_from_cluster_size`), chosen at the first round and kept for the run: the target's density does
    not change between rounds, and a re-estimate on each round's own clusters could drift."""

    name = "size"

    def check(self, p: ClusterParams) -> None:
        if p.method != "dbscan":
            raise ValueError(f"INCLR.CLUSTER.K1_RULE size sets the Jaccard distance's k1, which METHOD "
                             f"{p.method!r} does not use: set METHOD dbscan or K1_RULE fixed.")
        if not (0 < int(p.k1_min) <= int(p.k1)):
            raise ValueError(f"INCLR.CLUSTER.K1_MIN={p.k1_min}: K1_RULE size needs 0 < K1_MIN <= K1={p.k1} "
                             "(K1 is the largest k1 it may choose).")
        if not p.k1_per_size > 0:
            raise ValueError(f"INCLR.CLUSTER.K1_PER_SIZE={p.k1_per_size}: must be > 0.")

    def kept(self, p: ClusterParams) -> bool:
        return True

    def choose(self, p: ClusterParams, first_pass: Callable[[], Any]) -> ScaleChoice:
        first = first_pass()
        size = median_cluster_size(first.labels_before_lgmr)
        k1 = k1_from_cluster_size(size, p.k1_per_size, p.k1_min, p.k1)
        return ScaleChoice(k1, {"rule": "size", "k1_max": int(p.k1), "eps_at_k1_max": first.eps, "median_size": size,
                                "per_size": float(p.k1_per_size), "k1_min": int(p.k1_min), "k1": k1})

    def kept_message(self, value: Any, p: ClusterParams, record: Mapping[str, Any]) -> str:
        size = (record.get("k1_choice") or {}).get("median_size")
        return (f"INCLR.CLUSTER.K1_RULE size: k1 = {int(value)} (median cluster size {size} at K1 {int(p.k1)}), "
                "kept for the run.")


for _rule in (FixedK1(), SizeK1()):
    K1_RULES[_rule.name] = _rule
