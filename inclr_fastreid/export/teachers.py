"""One teacher's weights out of an INCLR checkpoint (docs/design.md §4.2): teacher 1, teacher 2, or the
parameter mean of both with their BatchNorm statistics averaged, classifiers cut to the live K rows.

An INCLR checkpoint holds four networks (``student1/2``, ``teacher1/2``), the optimiser and the
pseudo-label state; what is deployed is one network's ``Baseline`` state dict (``backbone.*``, ``heads.*``).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import torch

from ..errors import ExportError
from ..io import CheckpointLoadError, safe_torch_load
from ..modeling.pseudo_classes import is_classifier_key

__all__ = ["TEACHERS", "read_inclr_state", "live_classes", "mean_bn_state", "teacher_state"]

TEACHERS = ("t1", "t2", "mean")
_PREFIX = {"t1": "teacher1.", "t2": "teacher2."}


def _strip_module(state: Mapping[str, Any]) -> Dict[str, Any]:
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def read_inclr_state(path: str) -> Dict[str, torch.Tensor]:
    """The model state dict of an INCLR checkpoint (``{"model": ...}`` as the trainer saves it)."""
    ckpt = safe_torch_load(path)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointLoadError(f"{path!r} is not a FastReID checkpoint (no 'model' state dict of tensors).")
    state = _strip_module(state)
    if not any(k.startswith("teacher1.") for k in state):
        hint = ("It looks like a plain FastReID model (a source model, or one exported already): "
                "it needs no export; load it with MODEL.META_ARCHITECTURE Baseline."
                if any(k.startswith("backbone.") for k in state) else "")
        raise CheckpointLoadError(f"{path!r} is not an INCLR checkpoint: it has no teacher1.* weights. {hint}".strip())
    return state


def live_classes(state: Mapping[str, torch.Tensor]) -> int:
    """K: pseudo classes of the last clustering (classifier rows 0..K-1 are live); all rows when the
    checkpoint has none (a model that never clustered)."""
    rows = int(state["teacher1.heads.weight"].shape[0])
    k = int(state["num_live_classes"]) if "num_live_classes" in state else 0
    return k if 0 < k <= rows else rows


def mean_bn_state(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Average of two state dicts of the same network: every floating-point entry (parameters and
    BatchNorm running mean / variance) is (a + b) / 2; integer buffers (``num_batches_tracked``)
    are taken from ``a``.

    Why the BN statistics are averaged rather than recomputed on target images: the export then
    needs only the checkpoint (no dataset on the export machine, no choice of images or
    augmentation, the same file every time), and it is what the parameter average implies for
    two teachers that are EMAs of students trained on the same target batches. Its cost, the gap
    to INCLR's two-network feature average, is measured in docs/results.md (the export check).
    """
    if a.keys() != b.keys():
        raise CheckpointLoadError(f"teacher1 and teacher2 differ in their keys: {sorted(set(a) ^ set(b))[:10]}")
    out = {}
    for k, va in a.items():
        vb = b[k]
        if va.shape != vb.shape:
            raise CheckpointLoadError(f"teacher1 and teacher2 differ in the shape of {k}: "
                                      f"{tuple(va.shape)} vs {tuple(vb.shape)}")
        if torch.is_floating_point(va):
            out[k] = ((va.double() + vb.double()) / 2).to(va.dtype)
        else:
            out[k] = va.clone()
    return out


def teacher_state(state: Mapping[str, torch.Tensor], teacher: str, num_classes: Optional[int] = None
                  ) -> Dict[str, torch.Tensor]:
    """The ``Baseline`` state dict (``backbone.*``, ``heads.*``) of teacher ``t1``, ``t2`` or their
    parameter ``mean``, classifiers cut to the first ``num_classes`` rows (default: the live K)."""
    if teacher not in TEACHERS:
        raise ExportError(f"--teacher {teacher!r}: use one of {', '.join(TEACHERS)}.")
    k = live_classes(state) if num_classes is None else int(num_classes)

    def one(prefix: str) -> Dict[str, torch.Tensor]:
        return {key[len(prefix):]: v for key, v in state.items() if key.startswith(prefix)}

    if teacher == "mean":
        net = mean_bn_state(one(_PREFIX["t1"]), one(_PREFIX["t2"]))
    else:
        net = {key: v.clone() for key, v in one(_PREFIX[teacher]).items()}
    return {key: (v[:k].clone() if is_classifier_key(key) else v) for key, v in net.items()}
