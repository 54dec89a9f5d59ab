"""INCLRTrainer: FastReID's DefaultTrainer, plus the clustering-UDA loop when ``INCLR.CLUSTER.ENABLED``.

Supervised runs (source pretraining) are FastReID's own. In adaptation runs the target training
set is unlabeled: iterations per epoch come from ``INCLR.ITERS_PER_EPOCH``, classifier rows are
pre-allocated (DESIGN.md §9, so the true identity count never leaks), and the
:class:`PseudoLabelHook` clusters before each epoch and swaps the train loader.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Dict, List, Optional

import torch
from fastreid.config import CfgNode
from fastreid.engine import hooks
from fastreid.engine.defaults import DefaultTrainer
from fastreid.engine.train_loop import AMPTrainer, SimpleTrainer, TrainerBase
from fastreid.utils import comm
from fastreid.utils.checkpoint import Checkpointer
from fastreid.utils.logger import setup_logger

from ..compat import CheckpointLoadError
from ..data.target import build_target_train_items

logger = logging.getLogger("fastreid." + __name__)


class _NotClusteredYet:
    """Placeholder train loader of an adaptation run: the PseudoLabelHook installs the real one."""

    dataset: List = []

    def __iter__(self):
        return self

    def __next__(self):
        raise RuntimeError("No pseudo labels yet: the PseudoLabelHook must run before the first step.")

    def shutdown(self) -> None:
        pass


class INCLRTrainer(DefaultTrainer):
    """A DefaultTrainer that can adapt to an unlabeled target set with pseudo labels."""

    def __init__(self, cfg: CfgNode):
        TrainerBase.__init__(self)
        if not logging.getLogger("fastreid").isEnabledFor(logging.INFO):
            setup_logger()
        self.adapting = bool(cfg.INCLR.CLUSTER.ENABLED)
        if self.adapting:
            self.target_items = build_target_train_items(cfg)
            cfg = self.scale_for_adaptation(cfg, len(self.target_items))
            data_loader = _NotClusteredYet()
            self.iters_per_epoch = int(cfg.INCLR.ITERS_PER_EPOCH)
        else:
            data_loader = self.build_train_loader(cfg)
            cfg = self.auto_scale_hyperparams(cfg, data_loader.dataset.num_classes)
            self.iters_per_epoch = len(data_loader.dataset) // cfg.SOLVER.IMS_PER_BATCH
            if self.iters_per_epoch == 0:
                raise ValueError(
                    f"The training set has {len(data_loader.dataset)} images, fewer than one batch "
                    f"(SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH}): lower the batch size."
                )
        model = self.build_model(cfg)
        optimizer, param_wrapper = self.build_optimizer(cfg, model)
        if comm.get_world_size() > 1:
            from fastreid.engine import defaults

            model = defaults.DistributedDataParallel(
                model, device_ids=[comm.get_local_rank()], broadcast_buffers=False,
            )
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(
            model, data_loader, optimizer, param_wrapper
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer, self.iters_per_epoch)
        if self.adapting:
            from .pseudo_label_hook import PseudoLabelState

            self.pseudo_state = PseudoLabelState()
        else:
            self.pseudo_state = None
        extra = {"pseudo_labels": self.pseudo_state} if self.adapting else {}
        self.checkpointer = Checkpointer(
            model, cfg.OUTPUT_DIR, save_to_disk=comm.is_main_process(), optimizer=optimizer,
            **self.scheduler, **extra,
        )
        self.start_epoch = 0
        self.max_epoch = cfg.SOLVER.MAX_EPOCH
        self.max_iter = self.max_epoch * self.iters_per_epoch
        self.warmup_iters = cfg.SOLVER.WARMUP_ITERS
        self.delay_epochs = cfg.SOLVER.DELAY_EPOCHS
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    # ---------------------------------------------------------------------------------------
    @staticmethod
    def scale_for_adaptation(cfg: CfgNode, num_target: int) -> CfgNode:
        """Pre-allocate classifier rows (MMT: one per target image) without reading true identities."""
        cfg = cfg.clone()
        cfg.defrost()
        rows = cfg.INCLR.MAX_CLASSES if cfg.INCLR.MAX_CLASSES > 0 else num_target
        cfg.MODEL.HEADS.NUM_CLASSES = int(rows)
        cfg.INCLR.NUM_SAMPLES = int(num_target)
        if comm.is_main_process() and cfg.OUTPUT_DIR:
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
            with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
                f.write(cfg.dump())
        cfg.freeze()
        return cfg

    def build_hooks(self) -> List[hooks.HookBase]:
        ret = super().build_hooks()
        if self.adapting:
            from .pseudo_label_hook import PseudoLabelHook

            # Clustering must run before any other before_epoch work of the epoch.
            ret.insert(0, PseudoLabelHook(self.cfg, self.target_items, self.pseudo_state))
        unwrapped = self.unwrapped_model
        if hasattr(unwrapped, "teacher1"):
            from .ema import EMAHook

            # Right after the optimiser step, before evaluation and checkpointing read the teachers.
            ret.insert(1 if self.adapting else 0, EMAHook(self.cfg.INCLR.EMA_MOMENTUM))
        return ret

    def run_step(self) -> None:
        if getattr(self, "skip_steps", False):  # degenerate clustering: see PseudoLabelHook
            return
        super().run_step()

    @property
    def unwrapped_model(self) -> torch.nn.Module:
        m = self.model
        return m.module if hasattr(m, "module") else m

    def resume_or_load(self, resume: bool = True) -> None:
        """Resume everything from OUTPUT_DIR, or start from MODEL.WEIGHTS (both students for INCLR)."""
        if resume and self.checkpointer.has_checkpoint():
            checkpoint = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=True)
            self.start_epoch = checkpoint.get("epoch", -1) + 1
            return
        model = self.unwrapped_model
        if hasattr(model, "load_pretrained"):
            if not self.cfg.MODEL.WEIGHTS:
                logger.warning("MODEL.WEIGHTS is empty: adapting from randomly initialised students.")
                return
            model.load_pretrained(self.cfg.MODEL.WEIGHTS, self.cfg.INCLR.WEIGHTS2)
            return
        self.checkpointer.load(self.cfg.MODEL.WEIGHTS)

    @classmethod
    def build_model_for_eval(cls, cfg: CfgNode) -> torch.nn.Module:
        """Model for ``--eval-only``: MODEL.WEIGHTS must exist and match (or be a Baseline for INCLR)."""
        model = cls.build_model(cfg)
        if not cfg.MODEL.WEIGHTS:
            raise CheckpointLoadError("--eval-only needs MODEL.WEIGHTS pointing to a trained model.")
        Checkpointer(model).load(cfg.MODEL.WEIGHTS)
        return model
