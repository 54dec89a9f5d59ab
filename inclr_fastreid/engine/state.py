"""What an adaptation run remembers between epochs and across a resume (checkpointed)."""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import torch

from ..pseudo_labels.scale import FrozenScale

__all__ = ["PseudoLabelState"]


class PseudoLabelState:
    """The current pseudo labels, cross-agreement, the run's seed, the clustering scale kept for the run and the
    label-quality history.

    Checkpoint extras must load with ``torch.load(weights_only=True)``: tensors and plain Python
    types only (the history travels as a JSON string)."""

    def __init__(self) -> None:
        self.labels: Optional[torch.Tensor] = None  # (N,) int64, -1 = outlier
        self.agreement: Optional[torch.Tensor] = None  # (N, P) float32
        self.num_classes = 0
        self.cluster_epoch = -1
        self.skip_epoch = False
        self.seed = -1
        # eps (EPS_RULE mmt, auto with EPS_FREEZE) and k1 (K1_RULE size) of the first round, kept for the run
        self.scale = FrozenScale()
        self.history: List[Dict[str, Any]] = []

    def state_dict(self) -> Dict[str, Any]:
        return {
            "labels": self.labels, "agreement": self.agreement, "num_classes": self.num_classes,
            "cluster_epoch": self.cluster_epoch, "skip_epoch": self.skip_epoch, "seed": self.seed,
            **self.scale.state_dict(), "history": json.dumps(self.history),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.labels, self.agreement = state["labels"], state["agreement"]
        self.num_classes, self.cluster_epoch = int(state["num_classes"]), int(state["cluster_epoch"])
        self.skip_epoch, self.seed = bool(state["skip_epoch"]), int(state["seed"])
        self.history = json.loads(state["history"])
        self.scale.load_state_dict(state)  # "eps" / "k1"; absent in checkpoints written before EPS_RULE / K1_RULE
