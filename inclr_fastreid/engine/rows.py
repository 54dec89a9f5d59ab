"""Classifier rows that follow the clusters, not the target set (docs/design.md §9).

MMT allocates one classifier row per target image; at Market-1501's 12,936 images that is 1.6 GB of
rows per checkpoint although a round trains K of them. Here an adaptation run starts with
``INCLR.CLASSIFIER_ROWS`` rows (0: ``NUM_CLUSTERS`` under k-means, whose K never exceeds it, so it
trains exactly as one row per image would; DBSCAN's K is not known before the first round, so it
starts at one row), and a round that finds more clusters than rows grows every classifier
(:func:`~inclr_fastreid.modeling.pseudo_classes.rows_for_clusters`), carrying the optimiser state of
the kept rows over. A resume gives the model the checkpoint's row count before loading it.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional

import torch
from fastreid.config import CfgNode
from torch import nn

from ..io import safe_torch_load
from ..modeling.pseudo_classes import is_classifier_key

logger = logging.getLogger("fastreid." + __name__)

__all__ = ["initial_classifier_rows", "swap_optimizer_params", "checkpoint_classifier_rows",
           "resize_model_rows"]


def initial_classifier_rows(cfg: CfgNode) -> int:
    """Rows an adaptation run starts with: ``INCLR.CLASSIFIER_ROWS``, or (0) k-means' K, or one row
    (DBSCAN: grown at the first round to what it finds)."""
    rows = int(cfg.INCLR.CLASSIFIER_ROWS)
    if rows > 0:
        return rows
    if cfg.INCLR.CLUSTER.METHOD == "kmeans" and int(cfg.INCLR.CLUSTER.NUM_CLUSTERS) > 0:
        return int(cfg.INCLR.CLUSTER.NUM_CLUSTERS)
    return 1


def _pad_rows(value: torch.Tensor, rows: int) -> torch.Tensor:
    out = value.new_zeros((rows,) + tuple(value.shape[1:]))
    keep = min(rows, value.shape[0])
    out[:keep] = value[:keep]
    return out


@torch.no_grad()
def swap_optimizer_params(optimizer: torch.optim.Optimizer, swaps: Dict[nn.Parameter, nn.Parameter]) -> None:
    """Replace parameters in ``optimizer``'s groups (old -> new, new may have another number of rows)
    and move their state along: per-element state (Adam's moments, SGD's momentum) keeps its kept rows,
    added rows start at zero; scalar state (``step``) is kept as is."""
    for group in optimizer.param_groups:
        group["params"] = [swaps.get(p, p) for p in group["params"]]
    for old, new in swaps.items():
        state = optimizer.state.pop(old, None)
        if state is None:
            continue
        moved: Dict[str, Any] = {}
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == old.shape and value.dim() >= 1:
                value = _pad_rows(value, new.shape[0])
            moved[key] = value
        optimizer.state[new] = moved


def checkpoint_classifier_rows(path: str) -> Optional[int]:
    """Rows of the classifiers in the checkpoint at ``path`` (memory-mapped read), None if it has none."""
    checkpoint = safe_torch_load(path, mmap=True)
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else {}
    for key, value in (state.items() if isinstance(state, dict) else ()):
        if is_classifier_key(key) and torch.is_tensor(value) and value.dim() == 2:
            return int(value.shape[0])
    return None


def resize_model_rows(model: nn.Module, rows: int, optimizer: Optional[torch.optim.Optimizer] = None) -> int:
    """Give the :class:`~inclr_fastreid.modeling.interface.PseudoLabelModel` inside ``model`` (not a DDP
    wrapper) ``rows`` classifier rows and swap the new parameters into ``optimizer``. Returns how many
    parameters were replaced. A DDP wrapper around ``model`` must be rebuilt afterwards."""
    from ..modeling.interface import as_pseudo_label_model

    before = dict(model.named_parameters())
    as_pseudo_label_model(model).resize_classifier_rows(rows)
    after = dict(model.named_parameters())
    swaps = {before[name]: p for name, p in after.items() if name in before and p is not before[name]}
    if optimizer is not None:
        swap_optimizer_params(optimizer, swaps)
    return len(swaps)
