"""Mixed precision (SOLVER.AMP.ENABLED): autocast really reaches the INCLR students' forward, feature
extraction runs under it with float32 features, and an overflowed feature is an error, not clustered.

On the CPU, autocast runs in bfloat16 (compat's AMPTrainer): the same code path as float16 on a GPU."""
import glob
import os

import pytest
import torch
import torch.nn.functional as F
from fastreid.modeling import build_model
from fastreid.utils.events import EventStorage
from torch import nn

from inclr_fastreid.data.target import TargetItem
from inclr_fastreid.engine.features import NonFiniteFeatureError, extract_features
from inclr_fastreid.engine.finite_loss import CheckedAMPTrainer, CheckedSimpleTrainer
from inclr_fastreid.engine.trainer import INCLRTrainer
from inclr_fastreid.modeling.interface import PseudoLabelModel

from tests.helpers.layouts import make_market1501
from tests.helpers.models import RESNET_DIM, inclr_batch, tiny_model_cfg

K, D = 3, RESNET_DIM
BRANCHES = ("global", "part1", "part2", "part3")


@pytest.mark.parametrize("amp", [True, False])
def test_autocast_reaches_both_students_forward_only_when_amp_is_on(amp):
    torch.manual_seed(0)
    cfg = tiny_model_cfg(num_classes=6, amp=amp, CLUSTER__ENABLED=True)
    model = build_model(cfg).train()
    g = torch.Generator().manual_seed(1)
    model.set_pseudo_classes(K, {b: F.normalize(torch.randn(K, D, generator=g), dim=1) for b in BRANCHES})
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = output.dtype
        return hook

    for net in ("student1", "student2"):
        getattr(model, net).backbone.register_forward_hook(record(net))  # the feature map the heads pool
    optimizer, wrapper = INCLRTrainer.build_optimizer(cfg, model)
    # the trainer class the INCLRTrainer picks from SOLVER.AMP.ENABLED
    trainer_cls = CheckedAMPTrainer if cfg.SOLVER.AMP.ENABLED else CheckedSimpleTrainer
    runner = trainer_cls(model, [inclr_batch()], optimizer, wrapper)
    before = model.student1.heads.weight.detach().clone()
    with EventStorage(0) as storage:
        runner.iter = storage.iter = 0
        runner.run_step()
    half = torch.bfloat16  # CPU autocast; float16 on CUDA
    assert seen == {"student1": half if amp else torch.float32, "student2": half if amp else torch.float32}
    # master weights stay float32 and were updated
    assert model.student1.heads.weight.dtype == torch.float32
    assert not torch.equal(model.student1.heads.weight[:K], before[:K])


class _Stub(nn.Module, PseudoLabelModel):
    """Features of a fixed projection; records whether autocast was on; image ``bad`` overflows."""

    def __init__(self, bad: str = ""):
        super().__init__()
        self.proj = nn.Linear(3 * 8 * 4, 6)
        self.bad = bad
        self.autocast = []

    def branch_features(self, batch):
        self.autocast.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        x = self.proj(F.adaptive_avg_pool2d(batch["images"].float(), (8, 4)).flatten(1))
        if self.bad:
            hit = torch.tensor([os.path.basename(p) == self.bad for p in batch["img_paths"]])
            x = torch.where(hit[:, None], x.half() * 1e5, x)  # beyond float16's 65,504: inf
        return {"global": x, "part1": x[:, :3]}

    def set_pseudo_classes(self, num_classes, centroids):
        raise NotImplementedError


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    root = tmp_path_factory.mktemp("amp_data")
    make_market1501(str(root), num_train=3, num_test=1, seed=4)
    paths = sorted(glob.glob(os.path.join(root, "Market-1501-v15.09.15", "bounding_box_train", "*.jpg")))
    return [TargetItem(p, os.path.basename(p)[:4], int(os.path.basename(p)[6])) for p in paths]


def _extract_cfg(amp: bool):
    from inclr_fastreid.config import setup_cfg

    from tests.helpers.tiny import ROOT, TINY

    return setup_cfg(os.path.join(ROOT, "configs", "INCLR", "duke2market.yml"),
                     TINY + ["SOLVER.AMP.ENABLED", str(amp), "INCLR.CLUSTER.BATCH_SIZE", "4"])


@pytest.mark.parametrize("amp", [True, False])
def test_extraction_runs_under_autocast_and_keeps_float32_features(items, amp):
    model = _Stub()
    feats = extract_features(model, items, _extract_cfg(amp))
    assert model.autocast and all(on == amp for on, _ in model.autocast)
    if amp:
        assert all(dtype == torch.bfloat16 for _, dtype in model.autocast)
    for v in feats.values():
        assert v.dtype == torch.float32 and v.shape[0] == len(items)
        torch.testing.assert_close(v.norm(dim=1), torch.ones(len(items)))


def test_an_overflowed_feature_is_reported_naming_the_image_not_clustered(items):
    bad = os.path.basename(items[5].path)
    with pytest.raises(NonFiniteFeatureError) as err:
        extract_features(_Stub(bad=bad), items, _extract_cfg(True))
    msg = str(err.value)
    assert bad in msg and "SOLVER.AMP.ENABLED False" in msg and "not clustered" in msg
    assert "1 image(s)" in msg
