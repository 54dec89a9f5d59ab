"""The step loops of INCLRTrainer: FastReID's Simple/AMPTrainer, stopping on a NaN/inf loss on every
rank before the optimiser step (docs/design.md §6).

FastReID checks the losses only on rank 0, after gathering them, so the other ranks went on into the
next collective and hung, and its message named neither the epoch nor what to do. Here every rank
checks, the ranks agree through one all_reduce, and all raise :class:`NonFiniteLossError`;
``INCLRTrainer.run_step`` adds the epoch and the last good checkpoint to its message.
"""
from __future__ import annotations

import math
from typing import Dict

import torch
from fastreid.config import CfgNode
from fastreid.engine.train_loop import AMPTrainer, SimpleTrainer
from fastreid.utils import comm

from ..errors import UserError

__all__ = ["NonFiniteLossError", "CheckedSimpleTrainer", "CheckedAMPTrainer", "build_step_trainer"]


class NonFiniteLossError(UserError, FloatingPointError):
    """A loss term became NaN or infinite; raised on every rank before the optimiser step (a user
    error: the message names the iteration, the terms, the last good checkpoint and what to change)."""


class _FiniteLossCheck:
    """Mixin for FastReID's Simple/AMPTrainer: check the losses on *every* rank before the
    optimiser step. FastReID checks only on rank 0, after gathering, so other ranks went on into
    the next collective and hung; and its message lacks the epoch and what to do."""

    def _write_metrics(self, loss_dict: Dict[str, torch.Tensor], data_time: float) -> None:
        values = {k: float(v.detach()) for k, v in loss_dict.items()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        flag = torch.tensor([float(bool(bad))], device=next(iter(loss_dict.values())).device)
        if comm.get_world_size() > 1:
            torch.distributed.all_reduce(flag)
        if flag.item() > 0:
            terms = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
            where = f"non-finite here: {', '.join(bad)}" if bad else "non-finite on another rank"
            raise NonFiniteLossError(
                f"Loss became NaN or infinite at iteration {self.iter} ({where}; {terms}). "
                "Training stopped before the optimiser step, so no parameter took a non-finite value."
            )
        super()._write_metrics(loss_dict, data_time)


class CheckedSimpleTrainer(_FiniteLossCheck, SimpleTrainer):
    """FastReID's SimpleTrainer (float32 step) with the every-rank finite-loss check."""


class CheckedAMPTrainer(_FiniteLossCheck, AMPTrainer):
    """FastReID's AMPTrainer (autocast + grad scaler) with the every-rank finite-loss check."""


def build_step_trainer(cfg: CfgNode, model: torch.nn.Module, data_loader, optimizer: torch.optim.Optimizer,
                       param_wrapper) -> SimpleTrainer:
    """One iteration's step loop: FastReID's AMPTrainer (``SOLVER.AMP.ENABLED``) or SimpleTrainer, with the
    every-rank finite-loss check."""
    cls = CheckedAMPTrainer if cfg.SOLVER.AMP.ENABLED else CheckedSimpleTrainer
    return cls(model, data_loader, optimizer, param_wrapper)
