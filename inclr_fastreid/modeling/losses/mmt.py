"""Mutual-mean-teaching losses (MMT, Ge et al. ICLR 2020) and the softmax-triplet of Eq. 3.

All computations run in float32 (autocast is switched off locally) because distances and
log-softmax over them lose too much in float16.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

from ...checks import check_label_smooth

__all__ = [
    "check_label_smooth",
    "label_smoothed_cross_entropy",
    "soft_cross_entropy",
    "softmax_triplet",
    "soft_softmax_triplet",
    "pairwise_euclidean",
    "batch_hard_pairs",
]


def _no_autocast(t: torch.Tensor):
    return torch.autocast(device_type=t.device.type, enabled=False)


def pairwise_euclidean(x: torch.Tensor) -> torch.Tensor:
    """B x B Euclidean distances sqrt(max(|xi|^2 + |xj|^2 - 2 xi.xj, 1e-12)) in float32."""
    with _no_autocast(x):
        x = x.float()
        sq = x.pow(2).sum(1, keepdim=True)
        d2 = sq + sq.t() - 2.0 * (x @ x.t())
        return d2.clamp(min=1e-12).sqrt()


def batch_hard_pairs(dist: torch.Tensor, targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per anchor: index of the hardest positive (largest distance, the anchor itself included),
    index of the hardest negative (smallest distance), and whether a negative exists."""
    if targets.dim() != 1 or targets.numel() != dist.shape[0]:
        raise ValueError(f"targets must be a vector of {dist.shape[0]} labels, got shape {tuple(targets.shape)}")
    same = targets[:, None] == targets[None, :]
    ap_idx = dist.masked_fill(~same, float("-inf")).argmax(dim=1)
    an_idx = dist.masked_fill(same, float("inf")).argmin(dim=1)
    has_neg = (~same).any(dim=1)
    return ap_idx, an_idx, has_neg


def _masked_mean(values: torch.Tensor, mask: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    if bool(mask.all()):
        return values.mean()
    if not bool(mask.any()):  # one label in the batch: no triplet; keep the graph alive
        return anchor.sum() * 0.0
    return values[mask].mean()


def label_smoothed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """MMT's hard CE with label smoothing (``CrossEntropyLabelSmooth``, yxgeee/MMT ``mmt/loss/crossentropy.py``):
    mean_i -sum_c q_ic log_softmax(logits_i)_c with q_i = (1 - epsilon) onehot(y_i) + epsilon / K,
    K = the number of columns of ``logits`` (the live pseudo classes). ``epsilon`` = 0: plain CE.
    """
    check_label_smooth(epsilon)
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels must be a vector of {logits.shape[0]}, got shape {tuple(labels.shape)}")
    with _no_autocast(logits):
        log_p = F.log_softmax(logits.float(), dim=1)
        nll = -log_p.gather(1, labels[:, None]).squeeze(1)
        return ((1.0 - epsilon) * nll - epsilon * log_p.mean(1)).mean()


def soft_cross_entropy(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """MMT's soft CE: mean_i -sum_c softmax(target_i)_c log_softmax(logits_i)_c.

    ``target_logits`` (the other network's mean teacher) is detached: it is a fixed target.
    """
    if logits.shape != target_logits.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target_logits {tuple(target_logits.shape)} differ")
    with _no_autocast(logits):
        target = F.softmax(target_logits.detach().float(), dim=1)
        return -(target * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


def _triplet_log_probs(dist: torch.Tensor, ap_idx: torch.Tensor, an_idx: torch.Tensor) -> torch.Tensor:
    """B x 2 log-softmax over [-d_ap, -d_an]: column 0 = log e^-d_ap / (e^-d_ap + e^-d_an)."""
    rows = torch.arange(dist.shape[0], device=dist.device)
    pair = torch.stack((-dist[rows, ap_idx], -dist[rows, an_idx]), dim=1)
    return F.log_softmax(pair, dim=1)


def softmax_triplet(features: torch.Tensor, targets: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """Batch-hard softmax-triplet loss, paper Eq. 3 / MMT's ``SoftTripletLoss(margin)``.

    Per anchor i with hardest positive p and hardest negative n (Euclidean distance of
    ``features``): -log(e^-d_ip / (e^-d_ip + e^-d_in)). ``margin`` m follows MMT's
    parameterisation, a mix of the two log-probabilities: -(1-m) log P(p) - m log P(n);
    m = 0 is Eq. 3. Anchors without a negative in the batch are left out. Nothing is detached.
    """
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"softmax_triplet margin (INCLR.MMT.TRI_MARGIN) must be in [0, 1), got {margin}")
    with _no_autocast(features):
        dist = pairwise_euclidean(features)
        ap_idx, an_idx, has_neg = batch_hard_pairs(dist, targets)
        logp = _triplet_log_probs(dist, ap_idx, an_idx)
        per_anchor = -(1.0 - margin) * logp[:, 0]
        if margin > 0:
            per_anchor = per_anchor - margin * logp[:, 1].clamp(min=-1e4)
        return _masked_mean(per_anchor, has_neg, features)


def soft_softmax_triplet(features: torch.Tensor, targets: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """MMT's soft softmax-triplet: hardest pairs chosen on the student's distances; the target is
    softmax over the teacher's [-d_ap, -d_an] of the same pairs; loss = soft CE between them.

    ``teacher_features`` (the other network's mean teacher) are detached: a fixed target.
    """
    if features.shape[0] != teacher_features.shape[0]:
        raise ValueError(
            f"student ({features.shape[0]}) and teacher ({teacher_features.shape[0]}) batch sizes differ"
        )
    with _no_autocast(features):
        dist = pairwise_euclidean(features)
        ap_idx, an_idx, has_neg = batch_hard_pairs(dist, targets)
        logp = _triplet_log_probs(dist, ap_idx, an_idx)
        with torch.no_grad():
            dist_t = pairwise_euclidean(teacher_features.detach())
            target = _triplet_log_probs(dist_t, ap_idx, an_idx).exp()
        per_anchor = -(target * logp.clamp(min=-1e4)).sum(1)
        return _masked_mean(per_anchor, has_neg, features)
