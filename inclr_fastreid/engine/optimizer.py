"""What FastReID's optimizer is built over in INCLRTrainer (docs/design.md §4.2.4, §9).

- a model of several networks (INCLR's students): FastReID's per-name rules (``SOLVER.HEADS_LR_FACTOR``
  on ``heads.*``, ``MODEL.FREEZE_LAYERS``) reach inside each network (:class:`NetworkScopedNames`);
- a stock ``Baseline`` with PartPoolHead: the part branches its losses never read are left out
  (:func:`freeze_unreached_part_branches`);
- adaptation runs: one tensor per parameter instead of FastReID's contiguous buffer, so the
  classifiers can grow with the clusters (``rows.py``; Adam's update is element-wise either way).
"""
from __future__ import annotations

import logging
from typing import Iterator, Tuple

import torch
from fastreid.config import CfgNode

from ..modeling.heads.part_pool_head import PartPoolHead
from ..modeling.interface import MeanTeacherModel
from .distributed import unwrap

__all__ = ["NetworkScopedNames", "freeze_unreached_part_branches", "build_optimizer"]

logger = logging.getLogger("fastreid." + __name__)


class NetworkScopedNames:
    """``named_modules()`` of a mutual-teaching model with each network's prefix (``student1.``)
    dropped, so FastReID's name rules (``SOLVER.HEADS_LR_FACTOR`` on ``heads.*``, ``MODEL.FREEZE_LAYERS``
    patterns matched from the start of a name) reach each student as they reach a ``Baseline``."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.networks = set(model.network_names) if isinstance(model, MeanTeacherModel) else set()

    def named_modules(self) -> Iterator[Tuple[str, torch.nn.Module]]:
        for name, module in self.model.named_modules():
            network, _, rest = name.partition(".")
            yield (rest if network in self.networks else name), module


def build_optimizer(cfg: CfgNode, model: torch.nn.Module):
    """FastReID's ``build_optimizer`` (optimizer, param wrapper) over ``model`` as described above."""
    from fastreid.solver import build_optimizer as fastreid_build_optimizer

    freeze_unreached_part_branches(model)
    scoped = NetworkScopedNames(model)
    return fastreid_build_optimizer(cfg, scoped if scoped.networks else model,
                                    contiguous=not bool(cfg.INCLR.CLUSTER.ENABLED))


def freeze_unreached_part_branches(model: torch.nn.Module) -> bool:
    """Under FastReID's stock ``Baseline`` (source pretraining, configs/UDA), ``Baseline.losses``
    reads only the global branch of a :class:`PartPoolHead`: no loss reaches the part necks (BNNeck
    and 1x1 embedding conv) or the part classifiers. FastReID's contiguous-buffer optimizer gives
    them zero gradients, not None, so the optimiser's L2 weight decay alone would shrink them every
    step, the part BNNecks' scale to ~0 over a full source schedule (docs/design.md §4.2.4). They
    are therefore set ``requires_grad=False`` here, which keeps them out of FastReID's optimizer
    (``get_default_optimizer_params`` skips them) and out of DDP's gradient reduction; they keep
    their initial (or loaded) values. The part BNNecks' running statistics still update in train
    mode (wanted, also for ``INCLR.PRETRAIN.TARGET_BN``). ``requires_grad`` is not in state dicts:
    checkpoints are unchanged. INCLR (a :class:`MeanTeacherModel`) is left alone: its losses reach
    every student parameter, and it builds its own networks when it loads a source model.
    Returns whether anything was frozen."""
    model = unwrap(model)
    heads = getattr(model, "heads", None)
    if isinstance(model, MeanTeacherModel) or not isinstance(heads, PartPoolHead) or heads.num_parts == 0:
        return False
    heads.part_bottlenecks.requires_grad_(False)
    for w in heads.part_weights:
        w.requires_grad_(False)
    logger.info("%s with PartPoolHead: its losses read the global branch only, so the %d part branches "
                "(necks, classifiers) are not optimised (docs/design.md §4.2.4).",
                type(model).__name__, heads.num_parts)
    return True
