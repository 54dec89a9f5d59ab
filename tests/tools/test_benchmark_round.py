"""The pieces of benchmarks/benchmark_round.py (its --small run whole is in tests/e2e/test_benchmark_round_small.py):
the live-tensor counter its memory breakdown rests on, and the two memory claims of the README's "Round cost": extraction
fills one buffer per branch (same features), and classifier rows beyond K change nothing."""
import importlib.util
import os

import numpy as np
import torch
import torch.nn.functional as F

import inclr_fastreid  # noqa: F401  (host compat)
from inclr_fastreid.modeling.interface import PseudoLabelModel
from PIL import Image

from tests.helpers.tiny import ROOT, TINY

TOOL = os.path.join(ROOT, "benchmarks", "benchmark_round.py")


def _load_tool():
    spec = importlib.util.spec_from_file_location("benchmark_round", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_live_tensor_counter_counts_allocations_not_views_or_in_place():
    tool = _load_tool()
    keep = torch.zeros(1000)  # 4,000 bytes that exist before
    with tool.LiveTensorBytes(existing=[keep]) as t:
        a = torch.ones(250)  # +1,000
        a.add_(1)  # in place: nothing
        v = a[10:]  # view: nothing
        keep.mul_(2)  # in place on an existing tensor: nothing
        b = a * 2  # +1,000 -> peak 6,000
        del a, v, b  # back to 4,000
        c = torch.ones(100)  # +400
    assert t.baseline == 4000
    assert t.peak == 6000
    assert t.current == 4400
    del c


class _StubTeachers(torch.nn.Module, PseudoLabelModel):
    def __init__(self):
        super().__init__()
        self.register_buffer("proj", torch.randn(2, 3 * 4 * 2, 5, generator=torch.Generator().manual_seed(0)))

    @torch.no_grad()
    def branch_features(self, batch):
        x = F.adaptive_avg_pool2d(batch["images"].float(), (4, 2)).flatten(1)
        return {"global": x @ self.proj[0], "part1": x @ self.proj[1]}

    def set_pseudo_classes(self, num_classes, centroids):
        raise NotImplementedError


def test_extraction_fills_one_buffer_per_branch_with_the_batchwise_features(tmp_path):
    import types

    from fastreid.data.transforms import build_transforms

    from inclr_fastreid.config import setup_cfg
    from inclr_fastreid.data.target import TargetItem
    from inclr_fastreid.engine.features import extract_features

    rng = np.random.default_rng(0)
    items = []
    for i in range(7):  # 7 images in batches of 3: a last, shorter batch
        path = str(tmp_path / f"{i:04d}_c1s1_000000_00.png")
        Image.fromarray(rng.integers(0, 256, (16, 8, 3), dtype=np.uint8)).save(path)
        items.append(TargetItem(path, str(i), 0))
    cfg = setup_cfg(os.path.join(ROOT, "configs", "Base-INCLR.yml"),
                    ["MODEL.DEVICE", "cpu", "SOLVER.AMP.ENABLED", "False", "INPUT.SIZE_TEST", "[16,8]", "OUTPUT_DIR", "",
                     "INCLR.CLUSTER.BATCH_SIZE", "3", "DATALOADER.NUM_WORKERS", "0"])
    model = _StubTeachers()
    feats = extract_features(model, items, cfg)

    transform = build_transforms(cfg, is_train=False)
    images = torch.stack([transform(Image.open(it.path).convert("RGB")) for it in items])
    expected = model.branch_features({"images": images})
    assert set(feats) == {"global", "part1"}
    for k, v in expected.items():
        assert feats[k].dtype == torch.float32 and feats[k].shape == (7, 5)
        torch.testing.assert_close(feats[k], F.normalize(v, dim=1), rtol=1e-6, atol=1e-6)


def test_classifier_rows_beyond_k_change_no_loss_and_no_weight():
    """Classifier rows >= K (INCLR.CLASSIFIER_ROWS) instead of one row per target image: bit-identical training."""
    import inclr_fastreid.modeling  # noqa: F401
    from fastreid.modeling import build_model
    from fastreid.utils.events import EventStorage

    from inclr_fastreid.config import setup_cfg
    from inclr_fastreid.engine.trainer import INCLRTrainer

    def build(rows):
        cfg = setup_cfg(os.path.join(ROOT, "configs", "Base-INCLR.yml"),
                        TINY + ["MODEL.HEADS.NUM_CLASSES", str(rows), "INCLR.NUM_SAMPLES", "16"])
        torch.manual_seed(0)
        return cfg, build_model(cfg).train()

    def train(cfg, model, k=6, steps=2):
        opt, _ = INCLRTrainer.build_optimizer(cfg, model)  # FastReID's contiguous-buffer Adam
        g = torch.Generator().manual_seed(1)
        model.set_pseudo_classes(k, {n: F.normalize(torch.randn(k, model.feat_dim, generator=g), dim=1)
                                     for n in ("global", "part1", "part2", "part3")})
        losses = []
        with EventStorage(0):
            for _ in range(steps):
                data = {"images": torch.rand(8, 3, 64, 32, generator=g) * 255,
                        "images2": torch.rand(8, 3, 64, 32, generator=g) * 255,
                        "targets": torch.arange(4).repeat_interleave(2), "index": torch.arange(8),
                        "agreement": torch.rand(8, 3, generator=g)}
                loss_dict = model(data)
                opt.zero_grad()
                sum(loss_dict.values()).backward()
                opt.step()
                model.update_teachers(0.5)
                losses.append([float(v.detach()) for v in loss_dict.values()])
        return losses, model.state_dict()

    cfg_big, big = build(120)
    cfg_small, small = build(12)
    with torch.no_grad():  # same networks: every entry, classifier rows and row buffers cut to 12
        for key, v in small.state_dict().items():
            src = big.state_dict()[key]
            v.copy_(src[: v.shape[0]] if v.shape != src.shape else src)
    losses_big, state_big = train(cfg_big, big)
    losses_small, state_small = train(cfg_small, small)
    assert losses_small == losses_big
    for key, v in state_small.items():
        src = state_big[key]
        if key.endswith("credibility"):
            continue
        assert torch.equal(v, src[: v.shape[0]] if v.shape != src.shape else src), key
