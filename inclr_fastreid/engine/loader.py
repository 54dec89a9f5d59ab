"""The train loader of an adaptation epoch: built from the pseudo labels, swapped into FastReID's
trainer, and shut down for good when replaced (docs/design.md §9)."""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from fastreid.config import CfgNode
from fastreid.data.build import fast_batch_collator
from fastreid.data.data_utils import BackgroundGenerator, DataLoaderX
from fastreid.utils import comm
from torch.utils.data import dataloader as torch_dataloader

from ..data.pseudo_dataset import PseudoIdentityBatchSampler, PseudoLabelDataset
from .distributed import check_ranks_agree

logger = logging.getLogger("fastreid." + __name__)

__all__ = ["build_pseudo_label_loader", "install_train_loader", "close_loader"]


def build_pseudo_label_loader(cfg: CfgNode, paths: Sequence[str], camids: np.ndarray, labels: np.ndarray,
                              agreement: Optional[np.ndarray], transform: Callable, num_views: int,
                              seed: int, epoch: int) -> DataLoaderX:
    """A prefetching P×K loader over the pseudo identities (outliers never drawn; an identity's other
    K-1 images from other cameras where it has any, as MMT), ``num_views`` augmented views per image,
    batches a pure function of ``seed``; checks that all ranks agree."""
    dataset = PseudoLabelDataset(list(paths), camids, labels, agreement, transform, two_views=num_views == 2)
    total, inst = int(cfg.SOLVER.IMS_PER_BATCH), int(cfg.DATALOADER.NUM_INSTANCE)
    sampler = PseudoIdentityBatchSampler(labels, total, inst, seed=seed, rank=comm.get_rank(),
                                         world_size=comm.get_world_size(),
                                         camids=camids if cfg.INCLR.MMT.CAMERA_SAMPLER else None)
    if sampler.ids_per_batch < total // inst:
        logger.warning("Epoch %d: only %d pseudo identities; batches hold %d x %d images instead of %d.",
                       epoch, len(sampler.members), sampler.ids_per_batch, inst, total)
    check_ranks_agree(epoch, labels, agreement, sampler.ids_per_batch // sampler.world_size * inst)
    return DataLoaderX(comm.get_local_rank(), dataset=dataset, batch_sampler=sampler,
                       num_workers=cfg.DATALOADER.NUM_WORKERS, collate_fn=fast_batch_collator,
                       pin_memory=torch.cuda.is_available())


def install_train_loader(trainer: Any, loader: Any) -> None:
    """Make ``loader`` the trainer's train loader from the next step on.

    FastReID keeps the loader and its iterator in private fields of the inner SimpleTrainer
    (``_trainer.data_loader`` / ``_data_loader_iter``) and offers no way to replace them; this is
    the one place that writes them. The old loader is shut down first: its prefetch thread would
    otherwise keep handing out batches with stale labels (and draw from the global RNGs).
    """
    inner = trainer._trainer
    close_loader(inner.data_loader)
    inner._data_loader_iter = None  # never a batch of the old loader again
    inner.data_loader = loader
    inner._data_loader_iter = iter(loader)


def close_loader(loader: Any) -> None:
    """Stop a train loader for good: FastReID's DataLoaderX prefetch thread and, with
    ``num_workers > 0``, the worker processes under it (otherwise they live until garbage collection).

    Idempotent; a no-op for other loaders (``None``, the placeholder).
    """
    if not isinstance(loader, DataLoaderX):
        return
    loader.shutdown()
    background = loader.__dict__.get("iter")  # FastReID sets it only once the loader is iterated
    inner = background.generator if isinstance(background, BackgroundGenerator) else None
    if isinstance(inner, torch_dataloader._MultiProcessingDataLoaderIter):
        inner._shutdown_workers()
    loader.batch = None  # the preloaded batch
