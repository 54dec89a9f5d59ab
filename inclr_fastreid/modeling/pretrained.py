"""Source-pretrained weights into the networks of a mutual-teaching model (docs/design.md §4.2):
a FastReID ``Baseline`` + PartPoolHead checkpoint, checked key by key, without its classifier rows."""
from __future__ import annotations

from typing import Dict, Mapping, Sequence, Tuple

import torch

from ..io import CheckpointLoadError, check_state_dict, safe_torch_load
from .pseudo_classes import is_classifier_key

__all__ = ["read_source_state", "source_weights_for", "without_part_branches"]


def read_source_state(path: str) -> Dict[str, torch.Tensor]:
    """The model state dict of a source-pretrained FastReID checkpoint ("module." prefixes dropped)."""
    if not path:
        raise CheckpointLoadError("load_pretrained: empty checkpoint path (set MODEL.WEIGHTS)")

    ckpt = safe_torch_load(path)
    if isinstance(ckpt, Mapping) and "model" in ckpt:
        state = ckpt["model"]
    elif isinstance(ckpt, Mapping) and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state = ckpt
    else:
        raise CheckpointLoadError(f"{path}: not a FastReID checkpoint (no 'model' state dict)")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def source_weights_for(expected: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor], path: str,
                       network_names: Sequence[str] = ()) -> Dict[str, torch.Tensor]:
    """Non-classifier entries of ``state`` after checking they match one network's ``expected``
    state dict exactly (classifier rows may differ: the target gets cluster centroids)."""
    unexpected = set(state) - set(expected)
    hint = ""
    if any(k.split(".")[0] in network_names for k in unexpected):
        hint = "This looks like an INCLR checkpoint: resume it with MODEL.WEIGHTS / --resume instead."
    elif any(k.startswith("heads.") for k in set(expected) - set(state)):
        hint = "Pretrain with MODEL.HEADS.NAME: PartPoolHead and the same NUM_PARTS/EMBEDDING_DIM."
    check_state_dict(expected, state, f"load_pretrained({path})", ignore=is_classifier_key, hint=hint)
    return {k: v for k, v in state.items() if not is_classifier_key(k)}


def without_part_branches(state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], int]:
    """``state`` less its part branches (``heads.part_bottlenecks.*``, ``heads.part_weights.*``), and how
    many branches that was: a NUM_PARTS P source model feeds a global-only (NUM_PARTS 0) network
    (docs/design.md §4.2.5)."""
    prefixes = ("heads.part_bottlenecks.", "heads.part_weights.")
    parts = {k.split(".")[2] for k in state if k.startswith(prefixes)}
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}, len(parts)
