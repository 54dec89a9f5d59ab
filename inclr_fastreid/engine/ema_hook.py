"""EMAHook: the mean-teacher step after every optimiser step (docs/design.md §4.2)."""
from __future__ import annotations

from fastreid.engine.train_loop import HookBase

from ..modeling.ema import ema_alpha
from ..modeling.interface import MeanTeacherModel
from .distributed import unwrap

__all__ = ["EMAHook"]


class EMAHook(HookBase):
    """After every optimiser step: T1 <- EMA(S1), T2 <- EMA(S2) with alpha_t = ema_alpha(t, momentum),
    t = trainer.iter + 1 (the number of steps taken so far, so resuming continues the schedule).

    Note: MMT uses t = iteration index (alpha = 0 on the very first step); here the first step
    already keeps half of the teacher (alpha = 1/2), as in docs/design.md §4.2.
    """

    def __init__(self, momentum: float = 0.999):
        ema_alpha(0, momentum)  # validate
        self.momentum = float(momentum)

    def after_step(self) -> None:
        if self.trainer.skip_steps:  # no optimiser step was taken (an epoch without pseudo labels)
            return
        model = unwrap(self.trainer.model)
        if not isinstance(model, MeanTeacherModel):
            raise TypeError(f"EMAHook needs a MeanTeacherModel (e.g. INCLR), got {type(model).__name__}")
        model.update_teachers(ema_alpha(self.trainer.iter + 1, self.momentum))
