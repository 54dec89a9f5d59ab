"""IGMO: inaccuracy-guided mutual optimisation (docs/design.md §4.5, paper Eq. 4-7).

A dynamic classifier made of the K L2-normalised cluster centroids gives the student's and the
mean teacher's class distributions; their KL divergence is the inaccuracy I_i of sample i's pseudo
label, exp(-I_i) its credibility, which weights the log-likelihood of the pseudo label.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "igmo_log_probabilities",
    "igmo_probabilities",
    "inaccuracy",
    "credibility",
    "credibility_weights",
    "uncertainty_weighted_kl_loss",
]


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def igmo_log_probabilities(features: torch.Tensor, centroids: torch.Tensor, temp: float = 20.0) -> torch.Tensor:
    """log softmax(temp * f_hat . C_hat^T) over the K centroids (Eq. 4-5), float32."""
    if features.dim() != 2 or centroids.dim() != 2 or features.shape[1] != centroids.shape[1]:
        raise ValueError(
            f"features (B x D) and centroids (K x D) must share D; got {tuple(features.shape)} and {tuple(centroids.shape)}"
        )
    if centroids.shape[0] == 0:
        raise ValueError("IGMO needs at least one centroid: call set_pseudo_classes before training")
    with torch.autocast(device_type=features.device.type, enabled=False):
        sim = F.normalize(_at_least_fp32(features), dim=1) @ F.normalize(_at_least_fp32(centroids), dim=1).t()
        return F.log_softmax(temp * sim, dim=1)


def igmo_probabilities(features: torch.Tensor, centroids: torch.Tensor, temp: float = 20.0) -> torch.Tensor:
    """p = softmax(temp * f_hat . C_hat^T): the centroid classifier of Eq. 4-5 (temp = beta = 20)."""
    return igmo_log_probabilities(features, centroids, temp).exp()


def inaccuracy(p_teacher: torch.Tensor, p_student: torch.Tensor) -> torch.Tensor:
    """Per-sample inaccuracy I_i = KL(p_teacher_i || p_student_i) (Eq. 6), from probabilities.

    (Losses use log-probabilities directly; this form is for callers holding probabilities.)
    """
    if p_teacher.shape != p_student.shape:
        raise ValueError(f"p_teacher {tuple(p_teacher.shape)} and p_student {tuple(p_student.shape)} differ")
    tiny = torch.finfo(p_student.dtype).tiny
    return (torch.xlogy(p_teacher, p_teacher) - p_teacher * p_student.clamp(min=tiny).log()).sum(1)


def credibility(inaccuracy_values: torch.Tensor) -> torch.Tensor:
    """Credibility weight w_i = exp(-I_i) (paper §III-B, after Eq. 6)."""
    return torch.exp(-inaccuracy_values)


def _inaccuracy_from_log(log_p_teacher: torch.Tensor, log_p_student: torch.Tensor) -> torch.Tensor:
    """I_i = KL(p_teacher_i || p_student_i) (Eq. 6) from log-probabilities."""
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(1)


@torch.no_grad()
def credibility_weights(student_feat: torch.Tensor, teacher_feat: torch.Tensor, centroids: torch.Tensor,
                        temp: float = 20.0) -> torch.Tensor:
    """w_i = exp(-KL(p_teacher_i || p_student_i)) on the centroid classifier (Eq. 4-6), no gradient:
    the credibility measured when IGMO's loss is off (label-quality log, docs/design.md §4.6)."""
    log_p = igmo_log_probabilities(student_feat, centroids, temp)
    log_pt = igmo_log_probabilities(teacher_feat, centroids, temp)
    return credibility(_inaccuracy_from_log(log_pt, log_p))


def uncertainty_weighted_kl_loss(
    student_feat: torch.Tensor,
    teacher_feat: torch.Tensor,
    centroids: torch.Tensor,
    labels: torch.Tensor,
    temp: float = 20.0,
    detach_weight: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_KL = -(1/n) sum_i w_i log p(y_i | x_i) (Eq. 7); returns (loss, credibility, inaccuracy).

    p is the student's centroid distribution; the teacher's distribution and the centroids are
    detached (the mean teacher and the clustering are references, not trained here). With
    ``detach_weight`` the weight w = exp(-I) is a constant; without it gradients also flow through
    w into the student (UNRN's reading, zkcys001/UDAStrongBaseline ``update_variance``) and the
    loss adds + mean(I) as the regulariser that keeps I small. The returned credibility and
    inaccuracy are detached. The lambda_KL weight is applied by the caller.
    """
    if student_feat.shape != teacher_feat.shape:
        raise ValueError(f"student {tuple(student_feat.shape)} and teacher {tuple(teacher_feat.shape)} features differ")
    k = centroids.shape[0]
    if labels.dim() != 1 or labels.shape[0] != student_feat.shape[0]:
        raise ValueError(f"labels must be a vector of {student_feat.shape[0]}, got {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
        raise ValueError(f"IGMO labels must lie in [0, {k}) (number of centroids); got max {int(labels.max())}")
    centroids = centroids.detach()
    log_p = igmo_log_probabilities(student_feat, centroids, temp)
    with torch.no_grad():
        log_pt = igmo_log_probabilities(teacher_feat.detach(), centroids, temp)
    inacc = _inaccuracy_from_log(log_pt, log_p)  # Eq. 6, KL(p_teacher || p_student)
    weight = credibility(inacc)
    if detach_weight:
        weight = weight.detach()
    nll = -log_p.gather(1, labels[:, None]).squeeze(1)
    loss = (weight * nll).mean()
    if not detach_weight:
        loss = loss + inacc.mean()
    return loss, weight.detach(), inacc.detach()
