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
step, naming the iteration, the loss terms and the last good checkpoint; a checkpoint that does not
fit the network is an error listing the keys (FastReID logs it and trains a partly random model).
"""
from __future__ import annotations

import logging
import math
import os
from typing import Dict, Iterator, List, Tuple

import torch
from fastreid.config import CfgNode
from fastreid.engine import hooks
from fastreid.engine.defaults import DefaultTrainer
from fastreid.engine.train_loop import AMPTrainer, SimpleTrainer, TrainerBase
from fastreid.utils import comm
from fastreid.utils.logger import setup_logger

from ..errors import ConfigError, UserError
from ..data.pseudo_dataset import NoPseudoLabelsLoader
from ..data.target import build_target_train_items
from ..io import CheckpointLoadError, atomic_write_text, safe_torch_load
from ..modeling.interface import MeanTeacherModel, as_pseudo_label_model
from ..modeling.pseudo_classes import is_classifier_key, rows_for_clusters
from .checkpoint import (MatchingCheckpointer, RoundCheckpointer, model_state, remove_stale_temp_files,
                         restore_best_metric)
from .distributed import seed_everything, sync_buffers, unwrap
from .ema_hook import EMAHook
from .pseudo_label_hook import PseudoLabelHook
from .rows import checkpoint_classifier_rows, initial_classifier_rows, resize_model_rows
from .state import PseudoLabelState

logger = logging.getLogger("fastreid." + __name__)


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


class _CheckedSimpleTrainer(_FiniteLossCheck, SimpleTrainer):
    pass


class _CheckedAMPTrainer(_FiniteLossCheck, AMPTrainer):
    pass


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
        self._trainer = (_CheckedAMPTrainer if cfg.SOLVER.AMP.ENABLED else _CheckedSimpleTrainer)(
            model, data_loader, optimizer, param_wrapper
        )
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
        branches of a stock Baseline's PartPoolHead are left out (:func:`freeze_unreached_part_branches`).
        Adaptation runs keep one tensor per parameter instead of FastReID's contiguous buffer, so the
        classifiers can grow with the clusters (:mod:`.rows`); Adam's update is element-wise either way."""
        from fastreid.solver import build_optimizer

        freeze_unreached_part_branches(model)
        scoped = NetworkScopedNames(model)
        return build_optimizer(cfg, scoped if scoped.networks else model,
                               contiguous=not bool(cfg.INCLR.CLUSTER.ENABLED))

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
    from ..modeling.heads.part_pool_head import PartPoolHead

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


def load_source_models(model: MeanTeacherModel, cfg: CfgNode) -> None:
    """Start an adaptation: student 1 / teacher 1 from MODEL.WEIGHTS, student 2 / teacher 2 from
    INCLR.WEIGHTS2 (MMT ``--init-1`` / ``--init-2``; empty: MODEL.WEIGHTS too, with a warning).
    The trainer and the tools that look at a run's first clustering (tools/cluster_quality.py) use it."""
    if not cfg.MODEL.WEIGHTS:
        logger.warning("MODEL.WEIGHTS is empty: adapting from randomly initialised students.")
        return
    weights2 = cfg.INCLR.WEIGHTS2
    # (a missing MODEL.WEIGHTS gets its own error first, from load_pretrained)
    if weights2 and not os.path.isfile(weights2) and os.path.isfile(cfg.MODEL.WEIGHTS):
        raise CheckpointLoadError(
            f"INCLR.WEIGHTS2 {weights2!r} not found: student 2 and teacher 2 start from a second source "
            "model, pretrained with another seed (README: 'Real data'; e.g. configs/Pretrain/<task>.yml "
            "INCLR.SEED 2 OUTPUT_DIR <dir>). Point INCLR.WEIGHTS2 to it, or set INCLR.WEIGHTS2 '' to start "
            "both students from MODEL.WEIGHTS.")
    model.load_pretrained(cfg.MODEL.WEIGHTS, weights2)
    warn_if_students_start_identical(model, cfg.MODEL.WEIGHTS, weights2)


def warn_if_students_start_identical(model: torch.nn.Module, weights: str, weights2: str) -> bool:
    """Log a warning (and return True) when both students (and so both teachers) start from the same
    source weights: mutual teaching then has almost nothing to exchange (docs/design.md §4.2). MMT starts
    them from two source models pretrained with different seeds (``--init-1`` / ``--init-2``)."""
    s1, s2 = model.student1.state_dict(), model.student2.state_dict()
    same = all(torch.equal(v, s2[k]) for k, v in s1.items()
               if not is_classifier_key(k))  # rows: cluster centroids
    if not same:
        return False
    if not weights2:
        why = f"INCLR.WEIGHTS2 is empty, so student 2 and teacher 2 also start from MODEL.WEIGHTS ({weights})"
    else:
        why = f"MODEL.WEIGHTS ({weights}) and INCLR.WEIGHTS2 ({weights2}) hold the same weights"
    logger.warning("%s: both students start identical, and mutual teaching has almost nothing to exchange. "
                   "Pretrain a second source model with another INCLR.SEED and pass it as INCLR.WEIGHTS2 "
                   "(MMT scripts/pretrain.sh, --init-1 / --init-2).", why)
    return True
