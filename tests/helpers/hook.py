"""The PseudoLabelHook on a fake trainer, fed crafted clustering payloads: the hook's rules (degenerate
clusterings, loader swaps, the scale kept for the run) without features or a model to cluster."""
import glob
import os
import types
from typing import Any, Dict, List, Sequence

import numpy as np
import pytest
import torch
from torch import nn

from fastreid.utils.events import EventStorage

from inclr_fastreid.config import setup_cfg
from inclr_fastreid.data.target import TargetItem
from inclr_fastreid.engine.pseudo_label_hook import PseudoLabelHook
from inclr_fastreid.engine.state import PseudoLabelState
from inclr_fastreid.modeling.interface import PseudoLabelModel
from inclr_fastreid.modeling.pseudo_classes import check_pseudo_classes

from tests.helpers import ROOT
from tests.helpers.layouts import make_market1501

CFG = os.path.join(ROOT, "configs", "INCLR", "duke2market.yml")
TINY = ["MODEL.DEVICE", "cpu", "INPUT.SIZE_TRAIN", "[64,32]", "INPUT.SIZE_TEST", "[64,32]", "INPUT.PADDING.SIZE", "2",
        "SOLVER.IMS_PER_BATCH", "8", "DATALOADER.NUM_INSTANCE", "2", "OUTPUT_DIR", ""]
ROWS, D = 10, 4  # the fake model's classifier rows and feature dimension


class RecordingModel(nn.Module, PseudoLabelModel):
    """Stands in for INCLR: checks K against ROWS pre-allocated rows as every model does, and
    remembers the K of every accepted ``set_pseudo_classes`` call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def branch_features(self, batched_inputs):
        raise NotImplementedError

    def set_pseudo_classes(self, k, centroids):
        check_pseudo_classes(k, ROWS, centroids, ("global", "part1", "part2", "part3"), D)
        self.calls.append(int(k))


class FakeTrainer:
    def __init__(self):
        self.model = RecordingModel()
        self._trainer = types.SimpleNamespace(data_loader=None, _data_loader_iter=None)
        self.storage = EventStorage(0)
        self.epoch = 0


def target_items(root: str) -> List[TargetItem]:
    """18 target images (6 identities x 3 cameras, Market-1501's layout) under ``root``, as the hook reads them."""
    make_market1501(root, num_train=6, num_test=1, per_cam=1, cams=3, seed=5)
    paths = sorted(glob.glob(os.path.join(root, "Market-1501-v15.09.15", "bounding_box_train", "*.jpg")))
    return [TargetItem(p, os.path.basename(p)[:4], int(os.path.basename(p)[6])) for p in paths]


def make_hook(items: Sequence[TargetItem], workers: int = 0, **over: Any) -> PseudoLabelHook:
    """A hook of configs/INCLR/duke2market.yml with ``over`` (key -> value) on a FakeTrainer, seed 11."""
    opts = TINY + ["MODEL.HEADS.NUM_CLASSES", str(ROWS), "DATALOADER.NUM_WORKERS", str(workers)]
    for k, v in over.items():
        opts += [k, str(v)]
    hook = PseudoLabelHook(setup_cfg(CFG, opts), items, PseudoLabelState())
    hook.state.seed = 11
    hook.trainer = FakeTrainer()
    return hook


def payload(labels, epoch: int = 0) -> Dict[str, Any]:
    """A clustering round's result as the hook applies it: ``labels`` (-1: outlier) and random centroids."""
    labels = torch.as_tensor(labels, dtype=torch.int64)
    k = int(labels.max()) + 1 if (labels >= 0).any() else 0
    centroids = {b: torch.nn.functional.normalize(torch.randn(max(k, 1), D), dim=1)[:k]
                 for b in ("global", "part1", "part2", "part3")}
    return {"labels": labels, "agreement": torch.ones(len(labels), 3), "num_classes": k,
            "centroids": centroids, "record": {"epoch": epoch, "num_clusters": k}}


def eps_passed_to_clustering(hook: PseudoLabelHook, items, monkeypatch) -> Any:
    """The ``eps`` override the hook's next clustering round hands to generate_pseudo_labels (None: none)."""
    return overrides_passed_to_clustering(hook, items, monkeypatch).get("eps")


def overrides_passed_to_clustering(hook: PseudoLabelHook, items, monkeypatch) -> Dict[str, Any]:
    """The keyword arguments the hook's next clustering round hands to generate_pseudo_labels."""
    import inclr_fastreid.engine.pseudo_label_hook as hook_mod

    seen = {}

    def fake_generate(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(hook_mod, "generate_pseudo_labels", fake_generate)
    feats = {"global": torch.zeros(len(items), 4), "part1": torch.zeros(len(items), 4)}
    with pytest.raises(RuntimeError, match="stop here"):
        hook._cluster(2, feats, 0.0)
    return seen


def true_labels(items: Sequence[TargetItem]) -> np.ndarray:
    return np.unique([it.true_pid for it in items], return_inverse=True)[1]


def close(hook: PseudoLabelHook):
    """Ends the hook (its loader's prefetch thread); returns the loader it had installed."""
    loader = hook.trainer._trainer.data_loader
    hook.after_train()
    return loader
