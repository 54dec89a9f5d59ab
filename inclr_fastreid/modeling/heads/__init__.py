"""Heads registered into FastReID's REID_HEADS_REGISTRY on import."""
from .part_pool_head import PartPoolHead, branch_names, join_eval_features, stripe_bounds

__all__ = ["PartPoolHead", "branch_names", "join_eval_features", "stripe_bounds"]
