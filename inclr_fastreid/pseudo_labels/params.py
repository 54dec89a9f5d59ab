"""The clustering round's settings (docs/design.md §4.3-4.4, §5): one dataclass, and the one map
from a config's ``INCLR.CLUSTER.*`` / ``INCLR.LGMR.*`` keys to it (used by the hook and the tools)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ClusterParams", "cluster_params_from_cfg"]


@dataclass(frozen=True)
class ClusterParams:
    """Settings of :func:`~inclr_fastreid.pseudo_labels.generate_pseudo_labels`.

    ``method`` names a clusterer of :data:`~inclr_fastreid.pseudo_labels.clustering.CLUSTERERS`,
    ``agreement`` a cross-agreement mode of :data:`~inclr_fastreid.pseudo_labels.agreement.AGREEMENTS`.
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

    def __post_init__(self) -> None:
        from .agreement import AGREEMENTS
        from .clustering import CLUSTERERS

        if self.method not in CLUSTERERS:
            raise ValueError(f"INCLR.CLUSTER.METHOD {self.method!r}: use one of {sorted(CLUSTERERS)}.")
        if self.agreement not in AGREEMENTS:
            raise ValueError(f"INCLR.LGMR.AGREEMENT {self.agreement!r}: use one of {sorted(AGREEMENTS)}.")
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
        agreement=c.LGMR.AGREEMENT,
    )
    values.update(overrides)
    return ClusterParams(**values)
