"""One student's loss terms in INCLR: MMT's hard and soft terms with LGMR's refined targets and IGMO's
credibility-weighted KL (docs/design.md §4.2, §4.4, §4.5; paper Eq. 1-8).

For student i with its own mean teacher T_i and the other one T_j (yxgeee/MMT ``mmt/trainers.py``,
``MMTTrainer``): ``loss_ce`` / ``loss_tri`` are the hard CE and softmax-triplet on the pseudo labels,
``loss_soft_ce`` / ``loss_soft_tri`` their soft counterparts against T_j's outputs, mixed by
``soft_ce_weight`` / ``soft_tri_weight``; ``loss_kl`` (IGMO on) is Eq. 8's KL against T_i's
prediction over the cluster centroids, weighted by the credibility of Eq. 4-7. The plain functions
are in ``modeling/losses``; this module assembles them as the meta-architecture trains them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch

from ...checks import check_aals_epoch, check_label_smooth, check_mixing_weights
from ..losses import (
    credibility_weights,
    label_smoothed_cross_entropy,
    lgmr_global_ce,
    lgmr_part_loss,
    soft_cross_entropy,
    soft_softmax_triplet,
    softmax_triplet,
    uncertainty_weighted_kl_loss,
)

__all__ = ["LOSS_NAMES", "StudentLosses"]

#: the terms a training forward returns (``loss_kl`` with IGMO on)
LOSS_NAMES = ("loss_ce", "loss_soft_ce", "loss_tri", "loss_soft_tri", "loss_kl")


def _mean_over_parts(terms: List[torch.Tensor]):
    """Mean of the per-part loss terms; 0 without part branches (NUM_PARTS 0: the global terms alone, as MMT)."""
    return sum(terms) / len(terms) if terms else 0.0


@dataclass(frozen=True)
class StudentLosses:
    """The loss settings (INCLR.MMT.*, INCLR.LGMR.*, INCLR.IGMO.*; checked on construction) and the
    assembly of one student's terms from its outputs and the two teachers' (:meth:`__call__`)."""

    soft_ce_weight: float = 0.5
    soft_tri_weight: float = 0.8
    tri_margin: float = 0.0
    label_smooth: float = 0.1
    lgmr_enabled: bool = True
    lgmr_beta: float = 0.5
    aals_epoch: int = 5
    igmo_enabled: bool = True
    igmo_temp: float = 20.0
    lambda_kl: float = 0.5
    detach_weight: bool = True

    def __post_init__(self) -> None:
        check_mixing_weights(self.soft_ce_weight, self.soft_tri_weight)
        check_label_smooth(self.label_smooth)
        check_aals_epoch(self.aals_epoch)
        object.__setattr__(self, "aals_epoch", int(self.aals_epoch))

    def __call__(self, s: dict, own_t: dict, other_t: dict, targets: torch.Tensor, agreement: torch.Tensor,
                 centroids: torch.Tensor, epoch: int) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """Losses of one student (its own mean teacher ``own_t`` for IGMO, the other one ``other_t`` for
        MMT's soft terms) and its per-sample credibility (B,). ``centroids``: the K live IGMO centroids;
        ``epoch``: the epoch being trained (decides the parts' loss).

        Label smoothing (``label_smooth``, MMT's CrossEntropyLabelSmooth) applies where the reference
        code uses it: the plain hard CE of the global and part branches (LGMR off; MMT
        ``mmt/trainers.py``). With LGMR on, the global target is PPLR's refined target (``PGLR``) from
        the first epoch; the parts train with label-smoothed CE while ``epoch`` < ``aals_epoch`` and
        with the agreement-aware loss (``AALS``, no further epsilon) from then on, as ``PPLRTrainer``
        (yoonkicho/PPLR ``pplr/trainers.py``, ``pplr/loss/loss.py``).
        """
        p = len(s["part_cls_outputs"])  # P part branches (agreement is B x P)
        if self.lgmr_enabled:
            ce_g = lgmr_global_ce(s["cls_outputs"], targets, s["part_pred_class_logits"], agreement, self.lgmr_beta)
            if int(epoch) < self.aals_epoch:  # PPLR's warm-up
                ce_p = sum(label_smoothed_cross_entropy(z, targets, self.label_smooth)
                           for z in s["part_cls_outputs"]) / p
            else:
                ce_p = sum(lgmr_part_loss(s["part_cls_outputs"][j], targets, agreement[:, j]) for j in range(p)) / p
        else:
            eps = self.label_smooth
            ce_g = label_smoothed_cross_entropy(s["cls_outputs"], targets, eps)
            ce_p = _mean_over_parts([label_smoothed_cross_entropy(z, targets, eps) for z in s["part_cls_outputs"]])
        soft_g = soft_cross_entropy(s["pred_class_logits"], other_t["pred_class_logits"])
        soft_p = _mean_over_parts(
            [soft_cross_entropy(z, zt) for z, zt in zip(s["part_pred_class_logits"], other_t["part_pred_class_logits"])]
        )
        losses = {
            "loss_ce": (1.0 - self.soft_ce_weight) * (ce_g + ce_p),
            "loss_soft_ce": self.soft_ce_weight * (soft_g + soft_p),
            "loss_tri": (1.0 - self.soft_tri_weight) * softmax_triplet(s["global_pool"], targets, self.tri_margin),
            "loss_soft_tri": self.soft_tri_weight
            * soft_softmax_triplet(s["global_pool"], targets, other_t["global_pool"]),
        }
        if self.igmo_enabled:
            loss_kl, weight, _ = uncertainty_weighted_kl_loss(
                s["global_neck"], own_t["global_neck"], centroids, targets, self.igmo_temp, self.detach_weight
            )
            losses["loss_kl"] = self.lambda_kl * loss_kl
        else:  # still measure the credibility (label-quality log), without a loss
            weight = credibility_weights(s["global_neck"], own_t["global_neck"], centroids, self.igmo_temp)
        return losses, weight
