"""Target-domain batch norm during source pretraining (``INCLR.PRETRAIN.TARGET_BN``, docs/design.md §4.2).

MMT's ``PreTrainer.train`` (yxgeee/MMT ``mmt/trainers.py``) forwards a target batch through the
model, in train mode and without a loss, right after the source forward of every iteration, so the
batch-norm running statistics describe the target domain before the first clustering. Here:

- the target batch comes from an infinite, shuffled loader over the train split of
  ``INCLR.PRETRAIN.TARGET_DATASETS`` (labels unused) with FastReID's train transforms and the
  source run's batch size per process (MMT: same transforms, batch size, random sampling);
- it goes through the model's ``backbone`` and ``heads`` (FastReID's ``Baseline.forward`` wants
  identity labels in train mode and computes losses: bypassed) under ``torch.no_grad()`` in train
  mode, after the source forward and before the backward, from a forward hook on the unwrapped
  model. BN layers in train mode update their running statistics under no_grad too; nothing enters
  the autograd graph, so the source loss's gradients are unchanged (train-mode BN normalises with
  the batch's own statistics, not the running ones). Under AMP the hook runs inside the trainer's
  autocast, as the source forward; under DDP it forwards the module inside the wrapper, whose
  buffers are not broadcast (``broadcast_buffers=False``): each rank's statistics see its own
  target batches, as its source batches.

The loader shuffles with its own generator and has at least one worker process: neither its order
nor its augmentation draws from the global RNGs that the source loader's prefetch thread uses
(FastReID's samplers reseed and draw from numpy's global RNG), so a run with a fixed ``INCLR.SEED``
still replays the same batches.
"""
from __future__ import annotations

import itertools
import logging
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import torch
from fastreid.config import CfgNode
from fastreid.data.build import build_reid_train_loader
from fastreid.data.common import CommDataset
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.transforms import build_transforms
from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm
from torch.utils.data import Sampler

from ..data.target import datasets_root
from .distributed import unwrap
from .loader import close_loader

__all__ = ["ShuffledForever", "build_target_bn_loader", "forward_target_batch", "TargetBatchNormHook"]

logger = logging.getLogger("fastreid." + __name__)


class ShuffledForever(Sampler):
    """``perm_1 + perm_2 + ...`` of ``range(size)`` from a private generator, each rank taking every
    ``world_size``-th index (FastReID's ``TrainingSampler`` without numpy's global RNG)."""

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1):
        if size < 1:
            raise ValueError("ShuffledForever needs at least one item")
        self.size, self.seed, self.rank, self.world_size = size, int(seed), rank, world_size

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng(self.seed)
        stream = itertools.chain.from_iterable(rng.permutation(self.size) for _ in itertools.count())
        return (int(i) for i in itertools.islice(stream, self.rank, None, self.world_size))


def build_target_bn_loader(cfg: CfgNode):
    """Infinite shuffled loader over the train split of ``INCLR.PRETRAIN.TARGET_DATASETS`` (labels and
    cameras unused), FastReID's train transforms, ``SOLVER.IMS_PER_BATCH`` split over the ranks."""
    names = tuple(cfg.INCLR.PRETRAIN.TARGET_DATASETS)
    root = datasets_root()
    items = []
    for name in names:
        items.extend((entry[0], 0, 0) for entry in DATASET_REGISTRY.get(name)(root=root).train)
    if not items:
        raise ValueError(f"INCLR.PRETRAIN.TARGET_DATASETS {names} under {root!r} has no training image.")
    dataset = CommDataset(items, build_transforms(cfg, is_train=True), relabel=False)
    logger.info("INCLR.PRETRAIN.TARGET_BN: a batch of %s (%d training images, labels unused) follows every "
                "source forward, without a loss.", "+".join(names), len(items))
    sampler = ShuffledForever(len(dataset), comm.shared_random_seed(), comm.get_rank(), comm.get_world_size())
    return build_reid_train_loader(train_set=dataset, sampler=sampler,
                                   total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
                                   num_workers=max(1, int(cfg.DATALOADER.NUM_WORKERS)))


@torch.no_grad()
def forward_target_batch(model: torch.nn.Module, batch: Any) -> None:
    """One target batch through ``model.backbone`` and ``model.heads`` in the model's current (train)
    mode, without gradient or loss: only the BN running statistics change. ``batch`` is a dict
    with ``images`` (B x 3 x H x W, 0-255) or the tensor itself; it is not modified."""
    images = batch["images"] if isinstance(batch, dict) else batch
    images = images.to(model.device, non_blocking=True)
    images = (images.float() - model.pixel_mean) / model.pixel_std  # out of place
    features = model.backbone(images)
    dummy = torch.zeros(images.shape[0], dtype=torch.long, device=images.device)  # classifier input only
    model.heads(features, dummy)


class TargetBatchNormHook(HookBase):
    """Forward one target batch after the source forward of every training step (MMT's PreTrainer).

    Armed in ``before_step`` and fired once by the model's forward hook, so other train-mode
    forwards (FastReID's PreciseBN, a user's own) and eval forwards never pull a target batch.
    ``loader``: any iterable of batches; its iterator is created here, at construction.
    """

    def __init__(self, loader: Iterable):
        self.loader = loader
        self._batches = iter(loader)
        self._handle: Optional[Any] = None
        self._armed = False
        self.num_forwards = 0

    def _model(self) -> torch.nn.Module:
        return unwrap(self.trainer.model)

    def before_train(self) -> None:
        self._handle = self._model().register_forward_hook(self._after_source_forward)

    def before_step(self) -> None:
        self._armed = True

    def _after_source_forward(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if not (self._armed and module.training):
            return
        self._armed = False
        forward_target_batch(module, next(self._batches))
        self.num_forwards += 1

    def after_step(self) -> None:
        self._armed = False

    def after_train(self) -> None:
        logger.info("INCLR.PRETRAIN.TARGET_BN: %d target batches forwarded in %d steps.", self.num_forwards,
                    self.trainer.iter - self.trainer.start_iter)
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        close_loader(self.loader)
