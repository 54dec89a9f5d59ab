"""Checkpoints of a run: strict key checks, and what FastReID forgets on a resume (the best
metric, temporaries of an interrupted save)."""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional

from fastreid.engine import hooks
from fastreid.utils.checkpoint import Checkpointer

from ..io import check_state_dict, safe_torch_load
from ..modeling.pseudo_classes import is_classifier_key

logger = logging.getLogger("fastreid." + __name__)

__all__ = ["MatchingCheckpointer", "check_state_matches", "model_state", "restore_best_metric",
           "remove_stale_temp_files"]

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
