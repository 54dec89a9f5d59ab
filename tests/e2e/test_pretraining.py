"""Source pretraining through tools/train_net.py (docs/design.md §4.2): two source models from two seeds, and
target-domain batch norm under DDP on two CPU processes. The hook's own tests are in
tests/engine/test_source_pretraining.py."""
import os
import subprocess
import sys

import pytest
import torch

from inclr_fastreid.engine import source_pretraining

from tests.helpers.layouts import make_dukemtmc, make_market1501
from tests.helpers.tiny import PRETRAIN_CFG, SMALL_NET, TINY, TRAIN_NET, free_port, run_main_in_process


# ------------------------------------------------------------------------------ two source models
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain_data")
    make_dukemtmc(str(root), num_train=6, num_test=3, seed=1)
    make_market1501(str(root), num_train=5, num_test=3, seed=2, pid_offset=301)
    return root


def _pretrain(out, data, *opts):
    """tools/train_net.py's ``main`` in this process, on one intra-op thread (same arithmetic each run)."""
    argv = ["--config-file", PRETRAIN_CFG, *TINY, *SMALL_NET, "SOLVER.MAX_EPOCH", "1", "SOLVER.WARMUP_ITERS", "0",
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
                          "--config-file", PRETRAIN_CFG, *TINY, *SMALL_NET, "SOLVER.MAX_EPOCH", "2",
                          "SOLVER.WARMUP_ITERS", "0", "TEST.EVAL_PERIOD", "100", "OUTPUT_DIR", str(out)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    steps = 2 * (36 // 8)  # 2 epochs of the 36 Duke images at a global batch of 8
    for log in ("log.txt", "log.txt.rank1"):
        assert f"TARGET_BN: {steps} target batches forwarded in {steps} steps" in (out / log).read_text(), log
    assert (out / "model_final.pth").is_file()
