"""Mean teachers: exponential moving average of the students (docs/design.md §4.2, MMT).

What is averaged: the *parameters* only, as MMT's ``_update_ema_variables`` (yxgeee/MMT
``mmt/trainers.py``). A teacher's BatchNorm running statistics are its own: teachers run their
forward pass in training mode on every batch (as MMT's ``model_ema.train()``), which updates them.
Integer buffers (``num_batches_tracked``) and INCLR's own buffers are left alone.
The hook that calls this after every optimiser step is ``engine.ema_hook.EMAHook``.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ema_alpha", "ema_update"]


def ema_alpha(step: int, momentum: float) -> float:
    """alpha_t = min(1 - 1/(t+1), momentum): short memory early on, ``momentum`` later (MMT)."""
    if step < 0:
        raise ValueError(f"EMA step must be >= 0, got {step}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"INCLR.EMA_MOMENTUM must be in [0, 1), got {momentum}")
    return min(1.0 - 1.0 / (step + 1), momentum)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """In place: theta_teacher <- alpha * theta_teacher + (1 - alpha) * theta_student (parameters)."""
    t_params = dict(teacher.named_parameters())
    s_params = dict(student.named_parameters())
    if t_params.keys() != s_params.keys():
        diff = sorted(set(t_params) ^ set(s_params))
        raise ValueError(f"teacher and student have different parameters: {diff[:10]}")
    for name, tp in t_params.items():
        sp = s_params[name]
        if tp.shape != sp.shape:
            raise ValueError(f"EMA shape mismatch at {name}: teacher {tuple(tp.shape)} vs student {tuple(sp.shape)}")
        tp.mul_(alpha).add_(sp.detach().to(tp.dtype), alpha=1.0 - alpha)
