"""Source pretraining as MMT does it (docs/design.md §4.2), without running train_net: the target-domain batch norm
hook (INCLR.PRETRAIN.TARGET_BN, inclr_fastreid/engine/source_pretraining.py), its sampler and config checks, and
the warning when an adaptation run starts both students from the same source model."""
import copy
import itertools
import os
import types

import pytest
import torch
from torch import nn

import inclr_fastreid  # noqa: F401  (host compat)
import inclr_fastreid.modeling  # noqa: F401  (registers INCLR, PartPoolHead)
from fastreid.modeling import build_model
from fastreid.utils.events import EventStorage
from inclr_fastreid.config import ConfigError, setup_cfg
from inclr_fastreid.engine.source_pretraining import ShuffledForever, TargetBatchNormHook
from inclr_fastreid.engine.trainer import INCLRTrainer

from tests.helpers.models import tiny_model_cfg
from tests.helpers.tiny import PRETRAIN_CFG, ROOT

def _cfg(meta="Baseline", num_classes=4):
    cfg = tiny_model_cfg(meta, num_classes)
    cfg.MODEL.LOSSES.NAME = ("CrossEntropyLoss", "TripletLoss")  # as configs/Pretrain: Baseline's own losses
    return cfg


def _bn_layers(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


@pytest.fixture(scope="module")
def baseline():
    torch.manual_seed(0)
    return build_model(_cfg())


@pytest.fixture
def storage():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core box: no spinning thread pools
    with EventStorage(0) as s:  # Baseline.losses logs its accuracy there
        yield s
    torch.set_num_threads(threads)


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "autocast_bf16"])
def test_target_forward_moves_bn_statistics_and_leaves_source_gradients_alone(baseline, amp, storage):
    g = torch.Generator().manual_seed(1)
    source = {"images": torch.rand(8, 3, 64, 32, generator=g) * 255, "targets": torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])}
    target = {"images": 150 + torch.rand(8, 3, 64, 32, generator=g) * 100}  # another intensity distribution
    target_before = target["images"].clone()
    with_target, without = copy.deepcopy(baseline).train(), copy.deepcopy(baseline).train()
    hook = TargetBatchNormHook(itertools.repeat(target))
    # what the hook reads of the trainer; the model wrapped as DDP wraps it
    hook.trainer = types.SimpleNamespace(model=torch.nn.DataParallel(with_target), iter=1, start_iter=0)
    hook.before_train()

    def step(model, armed):
        if armed:
            hook.before_step()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):  # the trainer's autocast, if AMP
            losses = model({k: v.clone() for k, v in source.items()})  # Baseline normalises in place
        sum(losses.values()).backward()
        hook.after_step()
        return {k: float(v.detach()) for k, v in losses.items()}

    loss_with, loss_without = step(with_target, True), step(without, False)
    assert hook.num_forwards == 1
    assert loss_with == loss_without
    grads = dict(without.named_parameters())
    n_grads = 0
    for name, p in with_target.named_parameters():
        q = grads[name]
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad), name  # bit for bit: the target forward is not in the graph
            n_grads += 1
    assert n_grads > 20

    # Every BN layer (backbone and the head's BNNecks) took one more update, from the target batch.
    bns_with, bns_without = _bn_layers(with_target), _bn_layers(without)
    assert any(n.startswith("heads.") for n in bns_with) and any(n.startswith("backbone.") for n in bns_with)
    for name, bn in bns_with.items():
        ref = bns_without[name]
        assert int(bn.num_batches_tracked) == int(ref.num_batches_tracked) + 1, name
        assert not torch.allclose(bn.running_mean, ref.running_mean), name
    # First BN layer, exactly: r <- (1 - m) r + m * mean of conv1 over the target batch.
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        x = (target["images"] - baseline.pixel_mean) / baseline.pixel_std
        mu_t = baseline.backbone.conv1(x).float().mean((0, 2, 3))
    bn1, m = with_target.backbone.bn1, with_target.backbone.bn1.momentum
    expected = (1 - m) * bns_without["backbone.bn1"].running_mean + m * mu_t
    assert torch.allclose(bn1.running_mean, expected, rtol=1e-3, atol=1e-3)
    assert torch.equal(target["images"], target_before)  # the target batch is not normalised in place

    # Not armed (a second forward in the same step, PreciseBN) or eval mode: no target batch.
    with torch.no_grad():
        with_target({k: v.clone() for k, v in source.items()})
        with_target.eval()
        hook.before_step()
        with_target({"images": source["images"].clone()})
    assert hook.num_forwards == 1
    hook.after_train()
    with_target.train()
    hook.before_step()
    with torch.no_grad():
        with_target({k: v.clone() for k, v in source.items()})
    assert hook.num_forwards == 1  # the forward hook is gone after training


def test_shuffled_forever_is_seeded_and_rank_sliced():
    one = list(itertools.islice(iter(ShuffledForever(5, seed=3)), 15))
    assert sorted(one[:5]) == sorted(one[5:10]) == list(range(5))  # whole passes, reshuffled
    assert one == list(itertools.islice(iter(ShuffledForever(5, seed=3)), 15))
    assert one != list(itertools.islice(iter(ShuffledForever(5, seed=4)), 15))
    ranks = [list(itertools.islice(iter(ShuffledForever(5, seed=3, rank=r, world_size=2)), 7)) for r in (0, 1)]
    assert ranks[0] == one[0:14:2] and ranks[1] == one[1:14:2]


def test_target_bn_config_checks():
    cfg = setup_cfg(PRETRAIN_CFG, ["MODEL.DEVICE", "cpu"])
    assert cfg.INCLR.PRETRAIN.TARGET_BN and cfg.INCLR.PRETRAIN.TARGET_DATASETS == ("Market1501",)
    assert cfg.DATASETS.NAMES == ("DukeMTMC",) and cfg.INCLR.SEED == 1
    for path in ("duke.yml", "market.yml"):  # the source-only configs are unchanged: no target BN
        assert not setup_cfg(os.path.join(ROOT, "configs", "Pretrain", path)).INCLR.PRETRAIN.TARGET_BN
    with pytest.raises(ConfigError, match="TARGET_DATASETS"):
        setup_cfg(PRETRAIN_CFG, ["INCLR.PRETRAIN.TARGET_DATASETS", "()"])
    with pytest.raises(ConfigError, match="PRECISE_BN"):
        setup_cfg(PRETRAIN_CFG, ["TEST.PRECISE_BN.ENABLED", "True"])
    with pytest.raises(ConfigError, match="INCLR.CLUSTER.ENABLED"):
        setup_cfg(PRETRAIN_CFG, ["INCLR.CLUSTER.ENABLED", "True"])


# ------------------------------------------------------------------------------ WEIGHTS2 warning
def _save_source(path, seed):
    torch.manual_seed(seed)
    torch.save({"model": build_model(_cfg()).state_dict()}, path)
    return str(path)


@pytest.mark.parametrize("second", ["", "same_path", "same_weights", "other_seed"])
def test_adaptation_warns_when_both_students_start_identical(tmp_path, fastreid_warnings, second):
    a = _save_source(tmp_path / "a.pth", 1)
    weights2 = {"": "", "same_path": a, "same_weights": _save_source(tmp_path / "a_copy.pth", 1),
                "other_seed": _save_source(tmp_path / "b.pth", 2)}[second]
    cfg = _cfg(meta="INCLR", num_classes=8)
    cfg.MODEL.WEIGHTS, cfg.INCLR.WEIGHTS2 = a, weights2
    torch.manual_seed(0)
    model = build_model(cfg)
    fake = types.SimpleNamespace(cfg=cfg, unwrapped_model=model)  # what resume_or_load reads
    INCLRTrainer.resume_or_load(fake, resume=False)
    text = fastreid_warnings.text
    if second == "other_seed":
        assert "start identical" not in text
        assert not torch.equal(model.student1.backbone.conv1.weight, model.student2.backbone.conv1.weight)
    else:
        assert "both students start identical" in text and "INCLR.WEIGHTS2" in text
        assert ("INCLR.WEIGHTS2 is empty" in text) == (second == "")
        assert torch.equal(model.student1.backbone.conv1.weight, model.student2.backbone.conv1.weight)


def test_a_missing_second_source_model_says_what_to_do(tmp_path):
    from inclr_fastreid.io import CheckpointLoadError

    cfg = _cfg(meta="INCLR", num_classes=8)
    cfg.MODEL.WEIGHTS, cfg.INCLR.WEIGHTS2 = _save_source(tmp_path / "a.pth", 1), str(tmp_path / "seed2.pth")
    fake = types.SimpleNamespace(cfg=cfg, unwrapped_model=build_model(cfg))
    with pytest.raises(CheckpointLoadError, match="INCLR.WEIGHTS2 .*seed2.pth.* not found.*INCLR.SEED 2"):
        INCLRTrainer.resume_or_load(fake, resume=False)
