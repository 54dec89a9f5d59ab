"""Source pretraining as MMT does it (docs/design.md §4.2): target-domain batch norm
(INCLR.PRETRAIN.TARGET_BN, inclr_fastreid/engine/source_pretraining.py), two source models from two seeds,
and the warning when an adaptation run starts both students from the same one."""
import copy
import itertools
import os
import subprocess
import sys
import types

import pytest
import torch
from torch import nn

import inclr_fastreid  # noqa: F401  (host compat)
import inclr_fastreid.modeling  # noqa: F401  (registers INCLR, PartPoolHead)
from fastreid.modeling import build_model
from fastreid.utils.events import EventStorage
from inclr_fastreid.config import ConfigError, setup_cfg
from inclr_fastreid.engine import source_pretraining
from inclr_fastreid.engine.source_pretraining import ShuffledForever, TargetBatchNormHook
from inclr_fastreid.engine.trainer import INCLRTrainer

from tests.helpers.layouts import make_dukemtmc, make_market1501
from tests.helpers.models import tiny_model_cfg
from tests.helpers.tiny import ROOT, SMALL_NET, TINY, TRAIN_NET, free_port, run_main_in_process

PAIR_CFG = os.path.join(ROOT, "configs", "Pretrain", "duke2market.yml")


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
    cfg = setup_cfg(PAIR_CFG, ["MODEL.DEVICE", "cpu"])
    assert cfg.INCLR.PRETRAIN.TARGET_BN and cfg.INCLR.PRETRAIN.TARGET_DATASETS == ("Market1501",)
    assert cfg.DATASETS.NAMES == ("DukeMTMC",) and cfg.INCLR.SEED == 1
    for path in ("duke.yml", "market.yml"):  # the source-only configs are unchanged: no target BN
        assert not setup_cfg(os.path.join(ROOT, "configs", "Pretrain", path)).INCLR.PRETRAIN.TARGET_BN
    with pytest.raises(ConfigError, match="TARGET_DATASETS"):
        setup_cfg(PAIR_CFG, ["INCLR.PRETRAIN.TARGET_DATASETS", "()"])
    with pytest.raises(ConfigError, match="PRECISE_BN"):
        setup_cfg(PAIR_CFG, ["TEST.PRECISE_BN.ENABLED", "True"])
    with pytest.raises(ConfigError, match="INCLR.CLUSTER.ENABLED"):
        setup_cfg(PAIR_CFG, ["INCLR.CLUSTER.ENABLED", "True"])


# ------------------------------------------------------------------------------ two source models
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain_data")
    make_dukemtmc(str(root), num_train=6, num_test=3, seed=1)
    make_market1501(str(root), num_train=5, num_test=3, seed=2, pid_offset=301)
    return root


def _pretrain(out, data, *opts):
    """tools/train_net.py's ``main`` in this process, on one intra-op thread (same arithmetic each run)."""
    argv = ["--config-file", PAIR_CFG, *TINY, *SMALL_NET, "SOLVER.MAX_EPOCH", "1", "SOLVER.WARMUP_ITERS", "0",
            "TEST.EVAL_PERIOD", "100", *opts, "OUTPUT_DIR", str(out)]
    run_main_in_process(argv, data, threads=1)
    return torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["model"]


def test_two_pretrainings_with_different_seeds_give_different_models(data, tmp_path, monkeypatch):
    """configs/Pretrain/duke2market.yml through train_net: the target (Market) batch is forwarded at
    every step; INCLR.SEED fixes the whole run (same seed: the same weights bit for bit), and the
    second seed gives a second, different source model for student 2."""
    calls = []
    forward = source_pretraining.forward_target_batch

    def counting(model, batch):
        calls.append(batch["images"].shape[0])
        return forward(model, batch)

    monkeypatch.setattr(source_pretraining, "forward_target_batch", counting)
    seed1 = _pretrain(tmp_path / "seed1", data)  # the config's INCLR.SEED 1
    steps = len(calls)
    assert steps == 36 // 8 and set(calls) == {8}  # one target batch per iteration, the source batch size
    again = _pretrain(tmp_path / "seed1_again", data, "INCLR.SEED", "1")
    seed2 = _pretrain(tmp_path / "seed2", data, "INCLR.SEED", "2")
    assert len(calls) == 3 * steps
    assert seed1.keys() == again.keys() == seed2.keys()
    assert all(torch.equal(seed1[k], again[k]) for k in seed1)
    differ = [k for k in seed1 if seed1[k].is_floating_point() and not torch.equal(seed1[k], seed2[k])]
    assert any(k.startswith("backbone.") and k.endswith(".weight") for k in differ)
    assert any(k.endswith("running_mean") for k in differ)


def test_target_bn_pretraining_under_ddp_on_two_cpu_processes(data, tmp_path):
    """Two ranks on gloo: every step of each rank forwards its own target batch, and a Baseline with
    PartPoolHead (part branches outside its loss) trains under DDP at all."""
    port = free_port()
    out = tmp_path / "ddp"
    env = dict(os.environ, FASTREID_DATASETS=str(data), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    res = subprocess.run([sys.executable, TRAIN_NET, "--num-gpus", "2", "--dist-url", f"tcp://127.0.0.1:{port}",
                          "--config-file", PAIR_CFG, *TINY, *SMALL_NET, "SOLVER.MAX_EPOCH", "2",
                          "SOLVER.WARMUP_ITERS", "0", "TEST.EVAL_PERIOD", "100", "OUTPUT_DIR", str(out)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    steps = 2 * (36 // 8)  # 2 epochs of the 36 Duke images at a global batch of 8
    for log in ("log.txt", "log.txt.rank1"):
        assert f"TARGET_BN: {steps} target batches forwarded in {steps} steps" in (out / log).read_text(), log
    assert (out / "model_final.pth").is_file()


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
