"""The unlabeled target training set of an adaptation run, read through FastReID's registry."""
from __future__ import annotations

import logging
import os
from typing import List, NamedTuple, Optional

from fastreid.config import CfgNode
from fastreid.data.datasets import DATASET_REGISTRY

from ..errors import EmptyTargetSetError

logger = logging.getLogger("fastreid." + __name__)


class TargetItem(NamedTuple):
    """One target training image. ``true_pid`` is used only to *measure* pseudo-label quality."""

    path: str
    true_pid: Optional[str]
    camid: int


def datasets_root() -> str:
    """FastReID's datasets root, read at call time (FastReID itself reads it once at import)."""
    return os.getenv("FASTREID_DATASETS", "datasets")


def build_target_train_items(cfg: CfgNode) -> List[TargetItem]:
    """Training images of ``DATASETS.NAMES`` with their camera ids; identities kept apart for metrics."""
    items: List[TargetItem] = []
    root = datasets_root()
    for name in cfg.DATASETS.NAMES:
        data = DATASET_REGISTRY.get(name)(root=root)
        for entry in data.train:
            path, pid, camid = entry[0], entry[1], entry[2]
            items.append(TargetItem(path, None if pid is None else str(pid), int(str(camid).split("_")[-1])))
    if cfg.INCLR.SKIP_BAD_IMAGES:
        readable = drop_unreadable(items)
        if items and not readable:
            raise EmptyTargetSetError(
                f"All {len(items)} target training images of {tuple(cfg.DATASETS.NAMES)} are unreadable "
                "(INCLR.SKIP_BAD_IMAGES left none): check the image files."
            )
        items = readable
    if not items:
        raise EmptyTargetSetError(
            f"The target training set {tuple(cfg.DATASETS.NAMES)} under {os.path.abspath(root)!r} is empty: "
            "check the dataset folder (FASTREID_DATASETS) and DATASETS.NAMES."
        )
    return items


def drop_unreadable(items: List[TargetItem]) -> List[TargetItem]:
    """Leave out images PIL cannot decode; log how many and the first few names."""
    from PIL import Image

    good, bad = [], []
    for it in items:
        try:
            with Image.open(it.path) as im:
                im.load()
            good.append(it)
        except Exception:
            bad.append(it.path)
    if bad:
        logger.warning("INCLR.SKIP_BAD_IMAGES: left out %d unreadable target image(s), e.g. %s",
                       len(bad), ", ".join(bad[:3]))
    return good
