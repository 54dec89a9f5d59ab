"""PseudoLabelHook: before every ``INCLR.CLUSTER.PERIOD``-th epoch, extract features of the whole
target set, cluster and refine them, hand the centroids to the model and swap the train loader
(docs/design.md §4.3-4.6, §6, §9). Orchestration only: extraction (``features``), clustering
(``pseudo_labels``), the model's pseudo classes (``modeling.interface``), the label-quality log
(``label_log``) and the loader (``loader``) each live in their own module.

Works with any :class:`~inclr_fastreid.modeling.interface.PseudoLabelModel`: INCLR, or FastReID's
stock ``Baseline`` (then it is a plain clustering-UDA baseline).

Degenerate clusterings, by rule (each logged as a warning):
- fewer than 2 clusters (all outliers, or one cluster): reuse the last labels if there are any,
  otherwise skip this epoch's adaptation (the model is left unchanged);
- fewer clusters than identities per batch: batches hold all K clusters (smaller batches);
- more clusters than classifier rows: the trainer grows the classifiers (``ensure_rows``; without it,
  e.g. a hook used on its own, the model refuses and the run stops naming ``INCLR.CLASSIFIER_ROWS``).

Reliability: each epoch's randomness is a function of ``PseudoLabelState.seed`` (checkpointed), and
the previous loader is shut down before reseeding, so a resumed run replays the batches of an
uninterrupted one. Under torch.distributed every rank extracts with rank 0's BN statistics, the
others wait for rank 0's clustering in a gloo group with ``INCLR.CLUSTER.WAIT_TIMEOUT``, a failure
while extracting or clustering fails every rank, and every epoch the ranks check that they train on
the same labels.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import torch
from fastreid.config import CfgNode
from fastreid.data.transforms import build_transforms
from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm

from ..data.pseudo_dataset import NoPseudoLabelsLoader
from ..data.target import TargetItem
from ..modeling.interface import as_pseudo_label_model
from ..pseudo_labels import cluster_params_from_cfg, generate_pseudo_labels
from ..pseudo_labels.scale import scale_rules
from .distributed import (broadcast_object, on_main_then_broadcast, seed_everything, sync_buffers,
                          unwrap, wait_group)
from .features import extract_features
from .label_log import last_credibility_auroc, quality_record, write_log
from .loader import build_pseudo_label_loader, close_loader, install_train_loader
from .state import PseudoLabelState

logger = logging.getLogger("fastreid." + __name__)

__all__ = ["PseudoLabelHook"]


class PseudoLabelHook(HookBase):
    """Cluster the target set and swap the train loader before each clustering epoch."""

    def __init__(self, cfg: CfgNode, items: Sequence[TargetItem], state: PseudoLabelState,
                 ensure_rows: Optional[Callable[[int], None]] = None):
        self.cfg = cfg
        self.ensure_rows = ensure_rows  # grows the classifiers for K clusters (INCLRTrainer.ensure_classifier_rows)
        self.wait_group: Any = None  # where the other ranks wait for rank 0's clustering (before_train)
        self.items = list(items)
        self.state = state
        self.params = cluster_params_from_cfg(cfg)
        self.scale_rules = scale_rules(self.params)  # which of the round's eps / k1 choices are kept for the run
        self.true_ids = true_identities(self.items)
        self.camids = np.array([it.camid for it in self.items], dtype=np.int64)
        if self.params.eps_rule == "auto" and self.params.method == "dbscan" and not self.params.camera_norm:
            logger.warning("INCLR.CLUSTER.EPS_RULE auto without INCLR.CLUSTER.CAMERA_NORM: on raw features the "
                           "views also agree on each camera's look, so the rule favours camera-split clusters "
                           "(docs/design.md §4.3.1); set INCLR.CLUSTER.CAMERA_NORM True with it.")
        self.train_transform = build_transforms(cfg, is_train=True)
        self.jsonl_path = os.path.join(cfg.OUTPUT_DIR, "pseudo_labels.jsonl") if cfg.OUTPUT_DIR else ""

    def before_train(self) -> None:
        # made here, on every rank at the same point (a collective); None on a single process
        self.wait_group = wait_group(float(self.cfg.INCLR.CLUSTER.WAIT_TIMEOUT))
        if self.state.seed < 0:
            seed = int(self.cfg.INCLR.SEED)
            if seed < 0:
                seed = int(torch.randint(0, 2 ** 31 - 1, (1,)).item())
            self.state.seed = broadcast_object(seed)

    def before_epoch(self) -> None:
        epoch = self.trainer.epoch
        # The last epoch's loader still prefetches in a background thread, drawing augmentation
        # randomness from the global RNGs: stop it *before* reseeding, or a resumed run (which has
        # no such thread) would see other random streams than an uninterrupted one.
        close_loader(self.trainer._trainer.data_loader)
        seed_everything(self.state.seed + 1000 * epoch)
        if epoch % max(1, int(self.cfg.INCLR.CLUSTER.PERIOD)) == 0 or self.state.labels is None:
            t0 = time.perf_counter()
            net = unwrap(self.trainer.model)
            # one set of teacher BN statistics on every rank (DDP does not broadcast them)
            sync_buffers(net, f"Epoch {epoch}: extraction")
            feats = extract_features(self.trainer.model, self.items, self.cfg)
            payload = on_main_then_broadcast(lambda: self._cluster(epoch, feats, t0), f"Epoch {epoch}: clustering",
                                             group=self.wait_group)
            self._apply(epoch, payload)
        self._install_loader(epoch)
        as_pseudo_label_model(unwrap(self.trainer.model)).start_epoch(epoch)

    def after_train(self) -> None:
        close_loader(self.trainer._trainer.data_loader)

    def _cluster(self, epoch: int, feats: Dict[str, torch.Tensor], t0: float) -> Dict[str, Any]:
        """Rank 0: cluster the gathered features, refine with LGMR; what every rank needs to apply."""
        t1 = time.perf_counter()
        parts = sorted(k for k in feats if k.startswith("part"))
        # the features stay on the device the teachers ran on (pseudo_labels searches there); the eps / k1 kept
        # for the run (EPS_RULE mmt, auto with EPS_FREEZE; K1_RULE size) are given from the second round on
        result = generate_pseudo_labels(feats["global"], [feats[p] for p in parts], self.params,
                                        lgmr_enabled=self.params.lgmr_enabled and bool(parts), camids=self.camids,
                                        **self.state.scale.overrides())
        record = quality_record(epoch, result, self.true_ids, time.perf_counter() - t1, t1 - t0, camids=self.camids)
        dump = (os.path.join(self.cfg.OUTPUT_DIR, f"credibility_epoch{epoch:03d}.npz")
                if self.cfg.OUTPUT_DIR else "")
        record["credibility_auroc"] = last_credibility_auroc(
            as_pseudo_label_model(unwrap(self.trainer.model)).credibility_values(), self.state.labels,
            self.true_ids, dump)
        return {"labels": torch.as_tensor(result.labels, dtype=torch.int64),
                "agreement": torch.as_tensor(result.agreement, dtype=torch.float32) if parts else None,
                "num_classes": int(result.num_classes), "record": record, "eps": result.eps, "k1": result.k1,
                "centroids": {k: torch.as_tensor(v) for k, v in result.centroids.items()}}

    def _apply(self, epoch: int, payload: Dict[str, Any]) -> None:
        k, record = payload["num_classes"], payload["record"]
        choice = record.get("eps_choice")
        if choice is not None:
            logger.info("Epoch %d: INCLR.CLUSTER.EPS_RULE auto: eps = %.4f by %s (%s); grid %s, scores %s.", epoch,
                        choice["eps"], choice["criterion"], choice["select"], choice["grid"],
                        choice["scores"])
        for line in self.state.scale.keep(self.scale_rules, payload, self.params, record):  # checkpointed
            logger.info("Epoch %d: %s", epoch, line)
        if k < 2:
            if self.state.labels is not None and self.state.num_classes >= 2:
                logger.warning("Epoch %d: clustering gave %d cluster(s); reusing the labels of epoch %d. "
                               "Check INCLR.CLUSTER.EPS / the source model's features.", epoch, k,
                               self.state.cluster_epoch)
                record["action"], self.state.skip_epoch = "reused_last_labels", False
            else:
                logger.warning("Epoch %d: clustering gave %d cluster(s) and there are no earlier labels: "
                               "skipping this epoch's adaptation. Raise INCLR.CLUSTER.EPS or lower "
                               "INCLR.CLUSTER.MIN_SAMPLES if this persists.", epoch, k)
                record["action"], self.state.skip_epoch = "skipped_epoch", True
        else:
            if self.ensure_rows is not None:
                self.ensure_rows(k)
            # Raises (naming INCLR.CLASSIFIER_ROWS) before any state changes if K still exceeds the rows.
            as_pseudo_label_model(unwrap(self.trainer.model)).set_pseudo_classes(k, payload["centroids"])
            record["action"], self.state.skip_epoch = "trained", False
            self.state.labels, self.state.agreement = payload["labels"], payload["agreement"]
            self.state.num_classes, self.state.cluster_epoch = k, epoch
        self.state.history.append(record)
        write_log(self.trainer.storage, self.state.history, self.jsonl_path, comm.is_main_process())

    def _install_loader(self, epoch: int) -> None:
        """Train this epoch on a fresh P×K loader of pseudo identities (or on nothing, see above)."""
        self.trainer.skip_steps = self.state.skip_epoch
        if self.state.labels is None:
            loader: Any = NoPseudoLabelsLoader("This epoch has no pseudo labels to train on (see the warning above).")
        else:
            agreement: Optional[np.ndarray] = None if self.state.agreement is None else self.state.agreement.numpy()
            loader = build_pseudo_label_loader(
                self.cfg, [it.path for it in self.items], self.camids, self.state.labels.numpy(), agreement,
                self.train_transform, as_pseudo_label_model(unwrap(self.trainer.model)).num_views,
                seed=self.state.seed + 1000 * epoch + 1, epoch=epoch)
        install_train_loader(self.trainer, loader)


def true_identities(items: Sequence[TargetItem]) -> Optional[np.ndarray]:
    """(N,) identity ids 0..M-1 of the target images, only to *measure* label quality; None if unknown."""
    if any(it.true_pid is None for it in items):
        return None
    return np.unique(np.array([it.true_pid for it in items]), return_inverse=True)[1].astype(np.int64)
