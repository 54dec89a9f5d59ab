"""What the engine needs from a model, declared once (docs/design.md §2).

The pseudo-label hook, the EMA hook and the trainer talk to a model only through these two
abstract bases: no attribute probing. ``INCLR`` is a :class:`MeanTeacherModel`; FastReID's stock
``Baseline`` (any head) is wrapped by :class:`BaselineAdapter` so the same hook turns it into a
plain clustering-UDA baseline (:func:`as_pseudo_label_model` picks the adapter).
"""
from __future__ import annotations

import abc
from typing import Dict, Mapping, Optional, Tuple

import torch
from torch import nn

__all__ = ["PseudoLabelModel", "MeanTeacherModel", "BaselineAdapter", "as_pseudo_label_model"]


class PseudoLabelModel(abc.ABC):
    """A model that trains on pseudo labels."""

    #: augmented views per image the model trains on (``images``, ``images2``, ...)
    num_views: int = 1

    @abc.abstractmethod
    def branch_features(self, batched_inputs: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Features to cluster, per branch ({"global"} or {"global", "part1", ...}), computed in eval
        mode without gradients. The caller L2-normalises them."""

    @abc.abstractmethod
    def set_pseudo_classes(self, num_classes: int, centroids: Mapping[str, torch.Tensor]) -> None:
        """Start an epoch with K pseudo classes: classifier rows 0..K-1 become the cluster centroids
        (per branch) and only those rows take part in training."""

    def classifier_rows(self) -> int:
        """Rows of each classifier (pseudo classes it can hold)."""
        raise NotImplementedError(f"{type(self).__name__} does not report its classifier rows")

    def resize_classifier_rows(self, rows: int) -> None:
        """Give every classifier exactly ``rows`` rows (kept rows keep their values, new rows are zero).
        Parameters are replaced by new objects: the trainer swaps them into its optimiser."""
        raise NotImplementedError(f"{type(self).__name__} cannot resize its classifiers")

    def start_epoch(self, epoch: int) -> None:
        """The trainer starts epoch ``epoch`` (0-based); for losses that change with the epoch, e.g.
        INCLR's AALS warm-up (docs/design.md §4.4). Default: nothing to do."""

    def credibility_values(self) -> Optional[torch.Tensor]:
        """Latest per-sample credibility of the pseudo labels (N,), NaN where unseen; None if the
        model does not estimate one (docs/design.md §4.6)."""
        return None


class MeanTeacherModel(PseudoLabelModel):
    """Students trained on pseudo labels, mean teachers that follow them (MMT, INCLR)."""

    num_views = 2
    #: child modules that are whole networks (backbone + heads), e.g. ("student1", ..., "teacher2")
    network_names: Tuple[str, ...] = ()

    @abc.abstractmethod
    def update_teachers(self, alpha: float) -> None:
        """Mean-teacher step: each teacher <- alpha * teacher + (1 - alpha) * its student."""

    @abc.abstractmethod
    def load_pretrained(self, path1: str, path2: str = "") -> None:
        """Start the networks from source-pretrained single-network checkpoint(s)."""


class BaselineAdapter(PseudoLabelModel):
    """FastReID's stock ``Baseline`` (one network, any head) seen as a :class:`PseudoLabelModel`."""

    def __init__(self, model: nn.Module):
        self.model = model

    def branch_features(self, batched_inputs: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        from .heads.part_pool_head import PartPoolHead

        batch = dict(batched_inputs)
        batch["images"] = batch["images"].clone()  # Baseline.preprocess_image normalises in place
        if isinstance(self.model.heads, PartPoolHead):
            return self.model.heads.eval_features(self.model.backbone(self.model.preprocess_image(batch)))
        return {"global": self.model(batch)}

    def set_pseudo_classes(self, num_classes: int, centroids: Mapping[str, torch.Tensor]) -> None:
        from .pseudo_classes import set_stock_head_classes

        set_stock_head_classes(self.model.heads, num_classes, centroids)

    def classifier_rows(self) -> int:
        from .pseudo_classes import head_classifier_weights

        return int(head_classifier_weights(self.model.heads)[0].shape[0])

    def resize_classifier_rows(self, rows: int) -> None:
        from .pseudo_classes import resize_head_rows

        resize_head_rows(self.model.heads, rows)


def as_pseudo_label_model(model: nn.Module) -> PseudoLabelModel:
    """``model`` itself if it declares the interface, a :class:`BaselineAdapter` for FastReID's Baseline."""
    from fastreid.modeling.meta_arch import Baseline

    if isinstance(model, PseudoLabelModel):
        return model
    if isinstance(model, Baseline):
        return BaselineAdapter(model)
    raise TypeError(
        f"{type(model).__name__} cannot train on pseudo labels: use FastReID's Baseline (any head), INCLR, "
        "or implement inclr_fastreid.modeling.interface.PseudoLabelModel."
    )
