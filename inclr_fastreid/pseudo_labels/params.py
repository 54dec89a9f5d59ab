"""The clustering round's settings (docs/design.md §4.3-4.4, §5): one dataclass, and the one map
from a config's ``INCLR.CLUSTER.*`` / ``INCLR.LGMR.*`` keys to it (used by the hook and the tools)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple

from .registries import AGREEMENTS, CLUSTERERS, EPS_RULES, K1_RULES

__all__ = ["ClusterParams", "cluster_params_from_cfg", "AUTO_COVERAGES", "DEFAULT_EPS_GRID"]

#: INCLR.CLUSTER.AUTO_COVERAGE: what the auto rule's agreement is weighted by (eps_grid.coverage_over_grid): the
#: share of images in clusters spanning >= 2 cameras (needs camera ids), or of images clustered at all
AUTO_COVERAGES = ("multi_camera", "clustered")
#: values removed from AUTO_COVERAGES -> why, named when a config still sets one
REMOVED_COVERAGES = {"none": "the agreement alone favours precise, camera-split clusters and trained worse "
                             "(docs/studies.md)"}
#: INCLR.CLUSTER.EPS_GRID's default (eps_rule.DEFAULT_EPS_GRID): 0.20, 0.25, ..., 0.80
DEFAULT_EPS_GRID: Tuple[float, ...] = tuple(round(0.2 + 0.05 * i, 2) for i in range(13))


@dataclass(frozen=True)
class ClusterParams:
    """Settings of :func:`~inclr_fastreid.pseudo_labels.generate_pseudo_labels`.

    ``method`` names a clusterer of :data:`~.registries.CLUSTERERS`, ``agreement`` a cross-agreement mode of
    :data:`~.registries.AGREEMENTS`, ``eps_rule`` / ``k1_rule`` a rule of :data:`~.registries.EPS_RULES` /
    :data:`~.registries.K1_RULES`, which checks the settings it reads.
    Checked on construction; errors name the config key.
    """

    method: str = "dbscan"
    eps: float = 0.6
    min_samples: int = 4
    k1: int = 30
    k2: int = 6
    max_distance: float = 0.9
    camera_norm: bool = False
    lgmr_enabled: bool = True
    lgmr_k: int = 20
    min_agreement: float = 0.0
    agreement: str = "neighbour"
    num_clusters: int = 0  # kmeans: K in every space (INCLR.CLUSTER.NUM_CLUSTERS)
    eps_rule: str = "fixed"  # dbscan: fixed = eps; mmt = MMT-DBSCAN's eps from rho; auto (eps_rule.py)
    rho: float = 1.6e-3  # MMT-DBSCAN's fraction of the pairwise distances (examples/mmt_train_dbscan.py)
    eps_grid: Tuple[float, ...] = DEFAULT_EPS_GRID  # EPS_RULE auto: the eps values tried
    eps_freeze: bool = False  # EPS_RULE auto: keep the first round's choice for the run (else re-chosen every round)
    auto_coverage: str = "multi_camera"  # EPS_RULE auto: agreement x share of images in multi-camera clusters (camids)
    k1_rule: str = "fixed"  # dbscan: fixed = k1; size = k1 from the median cluster size at k1 (k1_rule.py)
    k1_per_size: float = 1.5  # K1_RULE size: k1 = clip(round(k1_per_size * median size), k1_min, k1)
    k1_min: int = 10  # K1_RULE size: the smallest k1 it may choose
    seed: int = 1  # k-means initialisation (MMT's --seed default); fixed, so a round is reproducible

    def __post_init__(self) -> None:
        CLUSTERERS.check(self.method)
        AGREEMENTS.check(self.agreement)
        EPS_RULES.check(self.eps_rule)
        if self.auto_coverage not in AUTO_COVERAGES:
            why = REMOVED_COVERAGES.get(self.auto_coverage)
            raise ValueError(f"INCLR.CLUSTER.AUTO_COVERAGE {self.auto_coverage!r}: "
                             + (f"removed ({why}); " if why else "") + f"use one of {list(AUTO_COVERAGES)}.")
        K1_RULES.check(self.k1_rule)
        K1_RULES[self.k1_rule].check(self)
        EPS_RULES[self.eps_rule].check(self)
        if not (0 < self.rho <= 1):
            raise ValueError(f"INCLR.CLUSTER.RHO={self.rho}: must be in (0, 1].")
        if self.method == "kmeans" and int(self.num_clusters) < 1:
            raise ValueError(f"INCLR.CLUSTER.METHOD kmeans needs INCLR.CLUSTER.NUM_CLUSTERS > 0 (got "
                             f"{self.num_clusters}); the paper's K: Market 500, Duke 700, MSMT17 1500.")
        if self.max_distance < self.eps:
            raise ValueError(
                f"max_distance={self.max_distance} (INCLR.CLUSTER.MAX_DISTANCE) must be >= eps={self.eps} "
                "(INCLR.CLUSTER.EPS): pairs farther than MAX_DISTANCE are not stored, so DBSCAN could not see them."
            )

    @property
    def k_search(self) -> int:
        """Neighbours searched per sample: shared by the Jaccard distance and LGMR's overlap."""
        return max(int(self.k1), int(self.lgmr_k) + 1) if self.lgmr_enabled else int(self.k1)


def cluster_params_from_cfg(cfg: Any, **overrides: Any) -> ClusterParams:
    """The clustering settings of a FastReID config with the INCLR keys; ``overrides`` replace fields."""
    c = cfg.INCLR
    values = dict(
        method=c.CLUSTER.METHOD, eps=c.CLUSTER.EPS, min_samples=c.CLUSTER.MIN_SAMPLES, k1=c.CLUSTER.K1,
        k2=c.CLUSTER.K2, max_distance=c.CLUSTER.MAX_DISTANCE, camera_norm=c.CLUSTER.CAMERA_NORM,
        lgmr_enabled=c.LGMR.ENABLED, lgmr_k=c.LGMR.K, min_agreement=c.LGMR.MIN_AGREEMENT,
        agreement=c.LGMR.AGREEMENT, num_clusters=c.CLUSTER.NUM_CLUSTERS, eps_rule=c.CLUSTER.EPS_RULE,
        rho=c.CLUSTER.RHO, eps_grid=tuple(float(e) for e in c.CLUSTER.EPS_GRID), eps_freeze=bool(c.CLUSTER.EPS_FREEZE),
        auto_coverage=c.CLUSTER.AUTO_COVERAGE, k1_rule=c.CLUSTER.K1_RULE, k1_per_size=float(c.CLUSTER.K1_PER_SIZE),
        k1_min=int(c.CLUSTER.K1_MIN),
    )
    values.update(overrides)
    return ClusterParams(**values)
