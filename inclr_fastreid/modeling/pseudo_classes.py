"""The one "K pseudo classes are live" mechanism (docs/design.md §4.5, §9).

Each clustering round writes the K cluster centroids into rows 0..K-1 of every classifier, branch
by branch, and only those rows enter the softmax: INCLR passes K to its heads; a stock head gets a
forward hook that cuts the logits to K columns in training. The number of rows follows the
clusters, not the target set's size: a round that finds more clusters than there are rows grows
every classifier (:func:`resize_head_rows`; the trainer carries the optimiser state over).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence

import torch
from torch import nn

from ..errors import TooManyClustersError

__all__ = ["check_pseudo_classes", "write_centroid_rows", "head_classifier_weights", "set_stock_head_classes",
           "is_classifier_key", "resize_head_rows", "rows_for_clusters", "ROW_HEADROOM"]

#: a round with K > rows grows the classifiers to ceil(K * ROW_HEADROOM) rows, so that a K rising by a
#: few clusters per round does not resize (and re-wrap DDP) every round
ROW_HEADROOM = 1.25


def check_pseudo_classes(num_classes: int, rows: int, centroids: Mapping[str, Any], names: Sequence[str],
                         feat_dim: int) -> Dict[str, torch.Tensor]:
    """Validate K against the pre-allocated rows and the centroid shapes; the centroids as tensors."""
    k = int(num_classes)
    if k < 1:
        raise ValueError(f"set_pseudo_classes: need at least one pseudo class, got {k}")
    if k > rows:
        raise TooManyClustersError(
            f"Clustering found {k} clusters but only {rows} classifier rows are pre-allocated: "
            f"raise INCLR.CLASSIFIER_ROWS (it sets MODEL.HEADS.NUM_CLASSES) to at least {k}; INCLRTrainer grows "
            "them by itself."
        )
    missing = [n for n in names if n not in centroids]
    if missing:
        raise KeyError(f"set_pseudo_classes: centroids lack {missing}; expected keys {list(names)}")
    out = {n: torch.as_tensor(centroids[n]) for n in names}  # numpy accepted too
    for n, c in out.items():
        if tuple(c.shape) != (k, feat_dim):
            raise ValueError(
                f"set_pseudo_classes: centroids[{n!r}] has shape {tuple(c.shape)}, expected ({k}, {feat_dim})"
            )
    return out


@torch.no_grad()
def write_centroid_rows(weights: Sequence[torch.Tensor], centroids: Mapping[str, torch.Tensor],
                        names: Sequence[str], k: int) -> None:
    """Rows 0..k-1 of each classifier weight (branch order ``names``) <- that branch's centroids."""
    for n, w in zip(names, weights):
        w.data[:k].copy_(centroids[n].to(w.device, w.dtype))


def head_classifier_weights(heads: nn.Module) -> Sequence[torch.Tensor]:
    """Classifier weights of a head in branch order: PartPoolHead's all branches, a stock
    FastReID head's (EmbeddingHead and its kind) ``weight``."""
    from fastreid.modeling.heads import EmbeddingHead

    from .heads.part_pool_head import PartPoolHead

    if isinstance(heads, PartPoolHead):
        return heads.classifier_weights()
    if isinstance(heads, EmbeddingHead):
        return [heads.weight]
    raise TypeError(f"{type(heads).__name__} is neither PartPoolHead nor an EmbeddingHead: cannot seed "
                    "pseudo classes into its classifier.")


def set_stock_head_classes(heads: nn.Module, num_classes: int, centroids: Mapping[str, Any]) -> None:
    """For a head under FastReID's stock Baseline: write the centroid rows and mask rows >= K out
    of the training logits (a forward hook, attached once)."""
    weights = head_classifier_weights(heads)
    names = ["global"] + [f"part{p}" for p in range(1, len(weights))]
    cents = check_pseudo_classes(num_classes, weights[0].shape[0], centroids, names, weights[0].shape[1])
    k = int(num_classes)
    write_centroid_rows(weights, cents, names, k)
    mask = _LiveClassMask.of(heads)
    mask.k = k


class _LiveClassMask:
    """Forward hook that cuts a stock head's training logits to the K live columns."""

    def __init__(self) -> None:
        self.k = 0

    @classmethod
    def of(cls, heads: nn.Module) -> "_LiveClassMask":
        for hook in heads._forward_hooks.values():
            if isinstance(hook, cls):
                return hook
        mask = cls()
        heads.register_forward_hook(mask)
        return mask

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        if not module.training or not isinstance(output, dict):
            return output
        k = self.k
        out = dict(output)
        for key in ("cls_outputs", "pred_class_logits"):
            if key in out and torch.is_tensor(out[key]):
                out[key] = out[key][:, :k]
        for key in ("part_cls_outputs", "part_pred_class_logits"):
            if key in out:
                out[key] = [t[:, :k] for t in out[key]]
        return out


def rows_for_clusters(num_classes: int) -> int:
    """Classifier rows allocated when a round finds ``num_classes`` clusters and needs more rows."""
    import math

    return max(1, int(math.ceil(int(num_classes) * ROW_HEADROOM)))


@torch.no_grad()
def resize_head_rows(heads: nn.Module, rows: int) -> None:
    """Give every classifier of ``heads`` (PartPoolHead's branches, or a stock EmbeddingHead) exactly
    ``rows`` rows: kept rows keep their values, added rows are zero (with zero gradient and Adam's
    L2 decay of zero a zero row stays zero until a round writes a centroid into it). The weights
    become new ``nn.Parameter`` objects; whoever optimises them must swap them in (the trainer's
    ``ensure_classifier_rows``)."""
    from fastreid.modeling.heads import EmbeddingHead

    from .heads.part_pool_head import PartPoolHead

    rows = int(rows)
    if rows < 1:
        raise ValueError(f"classifier rows must be >= 1, got {rows}")
    part_pool = isinstance(heads, PartPoolHead)
    if part_pool:
        owners = [(heads, "weight")] + [(heads.part_weights, str(i)) for i in range(len(heads.part_weights))]
    elif isinstance(heads, EmbeddingHead):
        owners = [(heads, "weight")]
    else:
        raise TypeError(f"{type(heads).__name__} is neither PartPoolHead nor an EmbeddingHead: cannot resize "
                        "its classifier.")
    for owner, name in owners:
        old = getattr(owner, name)
        new = torch.zeros(rows, old.shape[1], dtype=old.dtype, device=old.device)
        keep = min(rows, old.shape[0])
        new[:keep] = old[:keep]
        setattr(owner, name, nn.Parameter(new, requires_grad=old.requires_grad))
    if part_pool:
        heads.num_classes = rows
    heads.cls_layer.num_classes = rows


def is_classifier_key(key: str) -> bool:
    """True for a classifier weight in a state dict, with or without a network prefix:
    ``heads.weight``, ``student1.heads.part_weights.0``. Its shape follows the number of classes."""
    names = key.split(".")
    return names[-2:] == ["heads", "weight"] or names[-3:-1] == ["heads", "part_weights"]
