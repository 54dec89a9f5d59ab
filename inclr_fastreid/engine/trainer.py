"""INCLRTrainer: FastReID's DefaultTrainer, plus the clustering-UDA loop when ``INCLR.CLUSTER.ENABLED``.

Supervised runs (source pretraining) are FastReID's own, plus, with ``INCLR.PRETRAIN.TARGET_BN``, a
target batch forwarded without a loss after every source forward so the BN statistics describe the
target (MMT's PreTrainer; :mod:`.source_pretraining`). In adaptation runs the target training set is
unlabeled: iterations per epoch come from ``INCLR.ITERS_PER_EPOCH``, classifier rows follow the
clusters (:mod:`.rows`, docs/design.md §9; the true identity count never leaks), and the
:class:`PseudoLabelHook` clusters before each epoch and swaps the train loader.

Reliability (beyond FastReID's DefaultTrainer): a fixed ``INCLR.SEED`` also fixes network
initialisation; a checkpoint holds everything a resume needs, so a killed run resumed with
``--resume`` ends as if never interrupted; a NaN/inf loss stops every rank before the optimiser
step, naming the iteration, the loss terms and the last good checkpoint (:mod:`.finite_loss`); a
checkpoint that does not fit the network is an error listing the keys (FastReID logs it and trains a
partly random model). What the optimizer is built over is :mod:`.optimizer`'s; how an adaptation
starts from its two source models, :mod:`.source_models`'.
"""
from __future__ import annotations

import logging
import os
from typing import List

import torch
from fastreid.config import CfgNode
from fastreid.engine import hooks
from fastreid.engine.defaults import DefaultTrainer
from fastreid.engine.train_loop import TrainerBase
from fastreid.utils import comm
from fastreid.utils.logger import setup_logger

from ..errors import ConfigError
from ..data.pseudo_dataset import NoPseudoLabelsLoader
from ..data.target import build_target_train_items
from ..io import CheckpointLoadError, atomic_write_text, safe_torch_load
from ..modeling.interface import MeanTeacherModel, as_pseudo_label_model
from ..modeling.pseudo_classes import rows_for_clusters
from .checkpoint import (MatchingCheckpointer, RoundCheckpointer, model_state, remove_stale_temp_files,
                         restore_best_metric)
from .distributed import seed_everything, sync_buffers, unwrap
from .ema_hook import EMAHook
from .finite_loss import CheckedAMPTrainer, CheckedSimpleTrainer, NonFiniteLossError, build_step_trainer
from .optimizer import NetworkScopedNames, build_optimizer, freeze_unreached_part_branches
from .pseudo_label_hook import PseudoLabelHook
from .rows import checkpoint_classifier_rows, initial_classifier_rows, resize_model_rows
from .source_models import load_source_models, warn_if_students_start_identical
from .state import PseudoLabelState

# The step loops, optimiser and source-model helpers live in their own modules; the names are
# importable from here too (tools and tests import them from the trainer).
__all__ = ["INCLRTrainer", "NonFiniteLossError", "CheckedSimpleTrainer", "CheckedAMPTrainer", "build_step_trainer", "NetworkScopedNames",
           "freeze_unreached_part_branches", "load_source_models", "warn_if_students_start_identical"]

logger = logging.getLogger("fastreid." + __name__)


class INCLRTrainer(DefaultTrainer):
    """A DefaultTrainer that can adapt to an unlabeled target set with pseudo labels."""

    def __init__(self, cfg: CfgNode):
        TrainerBase.__init__(self)
        if not logging.getLogger("fastreid").isEnabledFor(logging.INFO):
            setup_logger()
        self.adapting = bool(cfg.INCLR.CLUSTER.ENABLED)
        self.skip_steps = False  # set by the PseudoLabelHook for an epoch without labels
        if int(cfg.INCLR.SEED) >= 0:
            # FastReID's default_setup seeds from the clock: with a fixed INCLR.SEED, networks
            # that MODEL.WEIGHTS does not fill (and the samplers) start the same in every run.
            seed_everything(int(cfg.INCLR.SEED))
        if self.adapting:
            self.target_items = build_target_train_items(cfg)
            cfg = self.scale_for_adaptation(cfg, len(self.target_items))
            data_loader = NoPseudoLabelsLoader(
                "No pseudo labels yet: the PseudoLabelHook must run before the first step.")
            self.iters_per_epoch = int(cfg.INCLR.ITERS_PER_EPOCH)
        else:
            data_loader = self.build_train_loader(cfg)
            cfg = self.auto_scale_hyperparams(cfg, data_loader.dataset.num_classes)
            self.iters_per_epoch = len(data_loader.dataset) // cfg.SOLVER.IMS_PER_BATCH
            if self.iters_per_epoch == 0:
                raise ConfigError(
                    f"The training set has {len(data_loader.dataset)} images, fewer than one batch "
                    f"(SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH}): lower the batch size."
                )
        model = self.build_model(cfg)
        optimizer, param_wrapper = self.build_optimizer(cfg, model)
        self.target_bn = None
        if not self.adapting and cfg.INCLR.PRETRAIN.TARGET_BN:
            from .source_pretraining import TargetBatchNormHook, build_target_bn_loader

            # Built after the model (the same initialisation with or without it for a given seed) and
            # before the source loader's prefetch thread starts: its shuffling and worker seeds are
            # drawn here, at a fixed point of this thread's random streams.
            self.target_bn = TargetBatchNormHook(build_target_bn_loader(cfg))
        model = self.wrap_distributed(model)
        self._trainer = build_step_trainer(cfg, model, data_loader, optimizer, param_wrapper)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer, self.iters_per_epoch)
        self.pseudo_state = PseudoLabelState() if self.adapting else None
        extra = {"pseudo_labels": self.pseudo_state} if self.adapting else {}
        self.checkpointer = MatchingCheckpointer(
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

    @staticmethod
    def wrap_distributed(model: torch.nn.Module) -> torch.nn.Module:
        """``model`` in DDP under torch.distributed (itself otherwise)."""
        if comm.get_world_size() == 1:
            return model
        from fastreid.engine import defaults

        # FastReID's Baseline with PartPoolHead (configs/Pretrain, configs/UDA) leaves the part
        # branches out of its loss. They no longer require grad (freeze_unreached_part_branches),
        # so DDP does not wait for them; find_unused_parameters stays on for stock Baselines
        # (not re-checked without it). INCLR's losses reach every student parameter.
        return defaults.DistributedDataParallel(
            model, device_ids=[comm.get_local_rank()],
            broadcast_buffers=False, find_unused_parameters=not isinstance(model, MeanTeacherModel),
        )

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: torch.nn.Module):
        """FastReID's optimizer; for a model of several networks (INCLR's students) its per-name
        rules apply inside each network (frozen teachers are skipped by FastReID already). The part
        branches of a stock Baseline's PartPoolHead are left out. Adaptation runs keep one tensor per
        parameter, so the classifiers can grow with the clusters (:mod:`.optimizer`, :mod:`.rows`)."""
        return build_optimizer(cfg, model)

    def ensure_classifier_rows(self, num_classes: int) -> None:
        """Before a round's K pseudo classes are set: grow every classifier when K exceeds its rows
        (optimiser state of the kept rows carried over; DDP rebuilt around the new parameters)."""
        rows = as_pseudo_label_model(self.unwrapped_model).classifier_rows()
        if int(num_classes) > rows:
            new_rows = rows_for_clusters(num_classes)
            logger.info("Clustering found %d clusters, more than the %d classifier rows: growing every classifier "
                        "to %d rows (optimiser state kept).", num_classes, rows, new_rows)
            self.resize_classifier_rows(new_rows)

    def resize_classifier_rows(self, rows: int) -> None:
        """Every classifier to exactly ``rows`` rows, the optimiser and DDP following."""
        net = self.unwrapped_model
        resize_model_rows(net, rows, self.optimizer)
        if self.model is not net:
            self._trainer.model = self.wrap_distributed(net)

    # ---------------------------------------------------------------------------------------
    @staticmethod
    def scale_for_adaptation(cfg: CfgNode, num_target: int) -> CfgNode:
        """Classifier rows to start with (:func:`.rows.initial_classifier_rows`), without reading true identities."""
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.HEADS.NUM_CLASSES = initial_classifier_rows(cfg)
        cfg.INCLR.NUM_SAMPLES = int(num_target)
        if comm.is_main_process() and cfg.OUTPUT_DIR:
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
            atomic_write_text(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), cfg.dump())
        cfg.freeze()
        return cfg

    def build_hooks(self) -> List[hooks.HookBase]:
        ret = [RoundCheckpointer(h.checkpointer, h.period, int(self.cfg.INCLR.KEEP_CHECKPOINTS))
               if type(h) is hooks.PeriodicCheckpointer else h for h in super().build_hooks()]
        if self.adapting:
            # Clustering must run before any other before_epoch work of the epoch.
            ret.insert(0, PseudoLabelHook(self.cfg, self.target_items, self.pseudo_state,
                                          ensure_rows=self.ensure_classifier_rows))
        if isinstance(self.unwrapped_model, MeanTeacherModel):
            # Right after the optimiser step, before evaluation and checkpointing read the teachers.
            ret.insert(1 if self.adapting else 0, EMAHook(self.cfg.INCLR.EMA_MOMENTUM))
        if self.target_bn is not None:
            ret.append(self.target_bn)
        return ret

    def run_step(self) -> None:
        if self.skip_steps:  # degenerate clustering: see PseudoLabelHook
            return
        try:
            super().run_step()
        except NonFiniteLossError as e:
            last = self.checkpointer.get_checkpoint_file() if self.checkpointer.has_checkpoint() else ""
            keep = (f"The last good checkpoint, {last}, is kept: resume from it with --resume"
                    if last else "No checkpoint was written yet: restart")
            raise NonFiniteLossError(
                f"{e} Epoch {self.epoch}. {keep} after lowering SOLVER.BASE_LR or checking the input data."
            ) from None

    @classmethod
    def test(cls, cfg: CfgNode, model: torch.nn.Module):
        """FastReID's evaluation, every rank holding rank 0's buffers (BN statistics; :func:`.distributed.sync_buffers`)."""
        sync_buffers(unwrap(model), "Evaluation")
        return super().test(cfg, model)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        """FastReID's test loader with ``DATALOADER.NUM_WORKERS`` workers instead of a fixed 4 (under
        ``launch`` each worker is a spawned process that re-imports everything: ~10 s apiece on a CPU)."""
        from fastreid.data.build import _test_loader_from_config, build_reid_test_loader

        return build_reid_test_loader(**_test_loader_from_config(cfg, dataset_name=dataset_name),
                                      num_workers=int(cfg.DATALOADER.NUM_WORKERS))

    @property
    def unwrapped_model(self) -> torch.nn.Module:
        return unwrap(self.model)

    def resume_or_load(self, resume: bool = True) -> None:
        """Resume everything from OUTPUT_DIR, or start from MODEL.WEIGHTS (both students for INCLR).

        Starting from MODEL.WEIGHTS loads the network only: a source model's optimiser and LR
        scheduler state would otherwise replace this run's (FastReID's own ``load`` restores them).
        """
        if resume and self.checkpointer.has_checkpoint():
            if comm.is_main_process():
                remove_stale_temp_files(self.cfg.OUTPUT_DIR)
            path = self.checkpointer.get_checkpoint_file()
            rows = checkpoint_classifier_rows(path) if self.adapting else None
            if rows is not None and rows != as_pseudo_label_model(self.unwrapped_model).classifier_rows():
                self.resize_classifier_rows(rows)  # the rows the run had grown to
            checkpoint = self.checkpointer.load(path)
            self.start_epoch = checkpoint.get("epoch", -1) + 1
            restore_best_metric(self._hooks, self.cfg.OUTPUT_DIR)
            return
        if resume and self.cfg.OUTPUT_DIR:
            logger.info("--resume: no %s yet; starting from MODEL.WEIGHTS.",
                        os.path.join(self.cfg.OUTPUT_DIR, "last_checkpoint"))
        model = self.unwrapped_model
        if isinstance(model, MeanTeacherModel):
            load_source_models(model, self.cfg)
            return
        self.checkpointer.load(self.cfg.MODEL.WEIGHTS, checkpointables=[])

    @classmethod
    def build_model_for_eval(cls, cfg: CfgNode) -> torch.nn.Module:
        """Model for ``--eval-only``: MODEL.WEIGHTS must exist and match (or be a Baseline for INCLR)."""
        model = cls.build_model(cfg)
        path = cfg.MODEL.WEIGHTS
        if not path:
            raise CheckpointLoadError("--eval-only needs MODEL.WEIGHTS pointing to a trained model.")
        if isinstance(model, MeanTeacherModel) and not any(
            k.startswith(("student1.", "module.student1.")) for k in model_state(safe_torch_load(path))
        ):  # a source (Baseline) model evaluated as INCLR: teacher 1 = the source network
            model.load_pretrained(path)
            return model
        rows = checkpoint_classifier_rows(path)
        if cfg.INCLR.CLUSTER.ENABLED and rows is not None:
            resize_model_rows(model, rows)  # an adaptation run's classifiers grew with its clusters
        MatchingCheckpointer(model).load(path)
        return model


