"""The k-reciprocal neighbourhood k1 from the target's density, without labels (docs/design.md §4.3.2).

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

from typing import Any

import numpy as np

__all__ = ["K1_RULES", "median_cluster_size", "k1_from_cluster_size"]

#: values of INCLR.CLUSTER.K1_RULE: fixed = K1; size = k1 from the first clustering's median cluster size
K1_RULES = ("fixed", "size")


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
