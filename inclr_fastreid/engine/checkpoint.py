"""Checkpoints of a run: strict key checks, what FastReID forgets on a resume (the best metric,
temporaries of an interrupted save), and a bounded disk: the newest ``INCLR.KEEP_CHECKPOINTS`` round
checkpoints are kept, and ``model_best`` holds the network alone (it is never resumed from)."""
from __future__ import annotations

import logging
import os
import re
from typing import Any, Dict, List, Optional

from fastreid.engine import hooks
from fastreid.utils.checkpoint import Checkpointer

from ..io import atomic_torch_save, check_state_dict, safe_torch_load
from ..modeling.pseudo_classes import is_classifier_key

logger = logging.getLogger("fastreid." + __name__)

__all__ = ["MatchingCheckpointer", "check_state_matches", "model_state", "restore_best_metric",
           "remove_stale_temp_files", "RoundCheckpointer", "prune_round_checkpoints"]

_ROUND_FILE = re.compile(r"^model_(\d+)\.pth$")

_PSEUDO_BUFFERS = ("igmo_centroids", "credibility", "num_live_classes", "current_epoch")


def _may_differ(key: str) -> bool:
    """Entries whose shape follows the data, not the architecture: classifier rows (number of
    classes) and INCLR's pseudo-label buffers (number of target images; ``current_epoch``, which
    checkpoints written before it existed lack: the hook sets it before every epoch)."""
    return is_classifier_key(key) or key.split(".")[-1] in _PSEUDO_BUFFERS


def model_state(checkpoint: Any) -> Dict[str, Any]:
    """The model state dict inside a FastReID checkpoint (``{"model": ...}``), or {}."""
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else {}
    return state if isinstance(state, dict) else {}


def check_state_matches(expected: Dict[str, Any], state: Dict[str, Any], source: str) -> None:
    """:func:`~inclr_fastreid.io.check_state_dict` for whole-model checkpoints: classifier rows and
    pseudo-label buffers may differ (they follow the data), nothing else may."""
    check_state_dict(expected, state, f"{source} (another architecture?)", ignore=_may_differ,
                     hint="Check MODEL.META_ARCHITECTURE, MODEL.BACKBONE.DEPTH, MODEL.HEADS.* against "
                          "the run that wrote it.")


class MatchingCheckpointer(Checkpointer):
    """FastReID's Checkpointer, except that a checkpoint that does not fit the network is an error
    listing the keys (:func:`check_state_matches`) instead of a log line."""

    _loading = "?"

    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Any:
        self._loading = path
        return super().load(path, checkpointables)

    def _load_model(self, checkpoint: Any) -> Any:
        check_state_matches(self.model.state_dict(), model_state(checkpoint),
                            f"Checkpoint {self._loading!r}")
        return super()._load_model(checkpoint)


def restore_best_metric(trainer_hooks: List[hooks.HookBase], output_dir: str) -> float:
    """After a resume, give FastReID's PeriodicCheckpointer the metric of the ``model_best.pth``
    already on disk: it starts from -1, so the first evaluation after a resume replaced a better
    best model with a worse one. Reads only the metric (memory-mapped load). Returns it (-1: none)."""
    path = os.path.join(output_dir, "model_best.pth") if output_dir else ""
    best = -1.0
    if path and os.path.isfile(path):
        try:
            best = float(safe_torch_load(path, mmap=True).get("metric", -1))
        except Exception as e:  # noqa: BLE001 - an unreadable best model must not stop the resume
            logger.warning("Could not read the metric of %s (%s): a later evaluation may replace it.", path, e)
    for h in trainer_hooks:
        if isinstance(h, hooks.PeriodicCheckpointer):
            h.best_metric = max(float(h.best_metric), best)
    if best >= 0:
        logger.info("Resumed: model_best.pth holds metric %.4f; it is replaced only by a better one.", best)
    return best


def remove_stale_temp_files(output_dir: str) -> List[str]:
    """Delete ``.tmp-*`` files that a run killed mid-save left in ``output_dir`` (the atomic writers'
    temporaries; the file they were replacing is intact). Returns the names removed."""
    removed = []
    if output_dir and os.path.isdir(output_dir):
        for name in sorted(os.listdir(output_dir)):
            if name.startswith(".tmp-") or name.endswith(".tmp.npz"):
                os.unlink(os.path.join(output_dir, name))
                removed.append(name)
    if removed:
        logger.warning("Removed %d unfinished file(s) of an interrupted save: %s", len(removed), ", ".join(removed))
    return removed


def prune_round_checkpoints(output_dir: str, keep: int) -> List[str]:
    """Delete all but the newest ``keep`` round checkpoints (``model_XXXX.pth``) in ``output_dir``;
    ``model_best`` / ``model_final`` are not round checkpoints. ``keep`` 0 keeps all. Returns the names removed."""
    if keep <= 0 or not output_dir or not os.path.isdir(output_dir):
        return []
    rounds = sorted((int(m.group(1)), name) for name in os.listdir(output_dir) if (m := _ROUND_FILE.match(name)))
    removed = [name for _, name in rounds[:-keep]]
    for name in removed:
        os.unlink(os.path.join(output_dir, name))
    return removed


class RoundCheckpointer(hooks.PeriodicCheckpointer):
    """FastReID's PeriodicCheckpointer (same schedule and names) with a bounded disk: after each round
    checkpoint only the newest ``keep`` remain (``last_checkpoint`` names the newest, so a resume
    never needs a deleted one), and ``model_best`` holds the network and its metric without the
    optimiser and pseudo-label state (evaluation and export read the network only)."""

    def __init__(self, checkpointer: Checkpointer, period: int, keep: int):
        super().__init__(checkpointer, period)
        self.keep = int(keep)

    def step(self, epoch: int, **kwargs: Any) -> None:
        epoch = int(epoch)
        state = {"epoch": epoch, **kwargs}
        last = epoch >= self.max_epoch - 1
        if ((epoch + 1) % self.period == 0 or last) and state["metric"] > self.best_metric:
            self._save_best(state)
            self.best_metric = state["metric"]
        if last:
            self.checkpointer.save("model_final", **state)
        elif (epoch + 1) % self.period == 0:
            self.checkpointer.save(f"model_{epoch:04d}", **state)
            removed = prune_round_checkpoints(self.checkpointer.save_dir, self.keep)
            if removed:
                logger.info("Kept the newest %d round checkpoint(s) (INCLR.KEEP_CHECKPOINTS); removed %s.",
                            self.keep, ", ".join(removed))

    def _save_best(self, state: Dict[str, Any]) -> None:
        c = self.checkpointer
        if not c.save_dir or not c.save_to_disk:
            return
        path = os.path.join(c.save_dir, "model_best.pth")
        logger.info("Saving the best model so far (metric %.4f) to %s", state["metric"], path)
        atomic_torch_save({"model": c.model.state_dict(), **state}, path)
