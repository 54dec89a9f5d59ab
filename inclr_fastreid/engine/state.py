"""What an adaptation run remembers between epochs and across a resume (checkpointed)."""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import torch

__all__ = ["PseudoLabelState"]


class PseudoLabelState:
    """The current pseudo labels, cross-agreement, the run's seed and the label-quality history.

    Checkpoint extras must load with ``torch.load(weights_only=True)``: tensors and plain Python
    types only (the history travels as a JSON string)."""

    def __init__(self) -> None:
        self.labels: Optional[torch.Tensor] = None  # (N,) int64, -1 = outlier
        self.agreement: Optional[torch.Tensor] = None  # (N, P) float32
        self.num_classes = 0
        self.cluster_epoch = -1
        self.skip_epoch = False
        self.seed = -1
        # DBSCAN eps frozen at the first round (EPS_RULE mmt, auto with EPS_FREEZE); None: not yet / not used
        self.eps: Optional[float] = None
        # the Jaccard distance's k1 chosen at the first round (K1_RULE size); None: not yet / not used
        self.k1: Optional[int] = None
        self.history: List[Dict[str, Any]] = []

    def state_dict(self) -> Dict[str, Any]:
        return {
            "labels": self.labels, "agreement": self.agreement, "num_classes": self.num_classes,
            "cluster_epoch": self.cluster_epoch, "skip_epoch": self.skip_epoch, "seed": self.seed,
            "eps": self.eps, "k1": self.k1, "history": json.dumps(self.history),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.labels, self.agreement = state["labels"], state["agreement"]
        self.num_classes, self.cluster_epoch = int(state["num_classes"]), int(state["cluster_epoch"])
        self.skip_epoch, self.seed = bool(state["skip_epoch"]), int(state["seed"])
        self.history = json.loads(state["history"])
        eps = state.get("eps")  # absent in checkpoints written before EPS_RULE existed
        self.eps = None if eps is None else float(eps)
        k1 = state.get("k1")  # absent in checkpoints written before K1_RULE existed
        self.k1 = None if k1 is None else int(k1)
