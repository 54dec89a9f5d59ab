"""An adaptation starts from two source models (docs/design.md §4.2): student 1 / teacher 1 from
MODEL.WEIGHTS, student 2 / teacher 2 from INCLR.WEIGHTS2, as MMT's ``--init-1`` / ``--init-2``
(yxgeee/MMT scripts/pretrain.sh pretrains them with two seeds).
"""
from __future__ import annotations

import logging
import os

import torch
from fastreid.config import CfgNode

from ..io import CheckpointLoadError
from ..modeling.interface import MeanTeacherModel
from ..modeling.pseudo_classes import is_classifier_key

__all__ = ["load_source_models", "warn_if_students_start_identical"]

logger = logging.getLogger("fastreid." + __name__)


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
