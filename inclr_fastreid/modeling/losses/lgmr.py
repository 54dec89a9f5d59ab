"""LGMR loss side: local/global mutual refinement of the classification losses (docs/design.md §4.4,
paper Eq. 1-2, refined as in PPLR, Cho et al. CVPR 2022).

The cross-agreement C_p(i) in [0, 1] between the global and part-p views of sample i is computed
by the pseudo-label hook and arrives with the batch; here it only weights losses (no gradient).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["lgmr_global_target", "lgmr_global_ce", "lgmr_part_loss"]


def _check_labels(labels: torch.Tensor, num_classes: int, name: str) -> None:
    if labels.dim() != 1:
        raise ValueError(f"{name}: labels must be a vector, got shape {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"{name}: labels must lie in [0, {num_classes}); got [{int(labels.min())}, {int(labels.max())}]"
            " (outliers (-1) must be dropped by the loader)"
        )


def lgmr_global_target(
    labels: torch.Tensor,
    part_logits: Sequence[torch.Tensor],
    agreement: torch.Tensor,
    num_classes: int,
    beta: float = 0.5,
) -> torch.Tensor:
    """Local -> global refined target: beta*onehot(y) + (1-beta)*sum_p softmax_p(C(i))_p softmax(z_p).

    Part logits and agreement are detached: the parts act as a teacher signal for the global branch.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"INCLR.LGMR.BETA must be in [0, 1], got {beta}")
    if agreement.dim() != 2 or agreement.shape[1] != len(part_logits):
        raise ValueError(
            f"agreement must be B x P with P={len(part_logits)} parts, got shape {tuple(agreement.shape)}"
        )
    onehot = F.one_hot(labels, num_classes).float()
    part_weight = F.softmax(agreement.detach().float(), dim=1)  # B x P
    part_probs = torch.stack([F.softmax(z.detach().float(), dim=1) for z in part_logits], dim=1)  # B x P x K
    mixed = (part_weight.unsqueeze(2) * part_probs).sum(1)
    return beta * onehot + (1.0 - beta) * mixed


def lgmr_global_ce(
    global_logits: torch.Tensor,
    labels: torch.Tensor,
    part_logits: Sequence[torch.Tensor],
    agreement: torch.Tensor,
    beta: float = 0.5,
) -> torch.Tensor:
    """Global CE (Eq. 1) against the LGMR-refined target (``lgmr_global_target``), batch mean.

    Gradient reaches ``global_logits`` only.
    """
    num_classes = global_logits.shape[1]
    _check_labels(labels, num_classes, "lgmr_global_ce")
    with torch.autocast(device_type=global_logits.device.type, enabled=False):
        target = lgmr_global_target(labels, part_logits, agreement, num_classes, beta)
        return -(target * F.log_softmax(global_logits.float(), dim=1)).sum(1).mean()


def lgmr_part_loss(part_logits: torch.Tensor, labels: torch.Tensor, agreement: torch.Tensor) -> torch.Tensor:
    """Global -> local, agreement-aware part loss (Eq. 2 reweighted), batch mean of
    C_p(i) CE(onehot(y_i), z_p) + (1 - C_p(i)) KL(uniform || softmax(z_p)).

    ``agreement`` (B, values in [0, 1]) is a constant weight (detached).
    """
    num_classes = part_logits.shape[1]
    _check_labels(labels, num_classes, "lgmr_part_loss")
    if agreement.dim() != 1 or agreement.shape[0] != part_logits.shape[0]:
        raise ValueError(f"agreement must be a vector of {part_logits.shape[0]}, got {tuple(agreement.shape)}")
    with torch.autocast(device_type=part_logits.device.type, enabled=False):
        c = agreement.detach().float().clamp(0.0, 1.0)
        logq = F.log_softmax(part_logits.float(), dim=1)
        ce = -logq.gather(1, labels[:, None]).squeeze(1)
        kl_uniform = -math.log(num_classes) - logq.mean(1)
        return (c * ce + (1.0 - c) * kl_uniform).mean()
