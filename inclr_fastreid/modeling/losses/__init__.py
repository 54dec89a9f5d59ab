"""INCLR's losses as plain functions, usable from any meta-architecture (docs/design.md §4.2, §4.4, §4.5)."""
from .igmo import (
    credibility,
    credibility_weights,
    igmo_log_probabilities,
    igmo_probabilities,
    inaccuracy,
    uncertainty_weighted_kl_loss,
)
from .lgmr import lgmr_global_ce, lgmr_global_target, lgmr_part_loss
from .mmt import (
    batch_hard_pairs,
    check_label_smooth,
    label_smoothed_cross_entropy,
    pairwise_euclidean,
    soft_cross_entropy,
    soft_softmax_triplet,
    softmax_triplet,
)

__all__ = [
    "batch_hard_pairs",
    "check_label_smooth",
    "credibility",
    "credibility_weights",
    "igmo_log_probabilities",
    "igmo_probabilities",
    "inaccuracy",
    "label_smoothed_cross_entropy",
    "lgmr_global_ce",
    "lgmr_global_target",
    "lgmr_part_loss",
    "pairwise_euclidean",
    "soft_cross_entropy",
    "soft_softmax_triplet",
    "softmax_triplet",
    "uncertainty_weighted_kl_loss",
]
