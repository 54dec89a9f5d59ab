"""The host compatibility layer: FastReID 1.4.0 imports and runs on this stack's CPU (a whole train_net run with its
trainer and evaluator is in tests/e2e/test_host_trainer.py)."""
import os
import pickle
import subprocess
import sys

import pytest
import torch

import inclr_fastreid
from inclr_fastreid.compat import applied_fixes
from inclr_fastreid.io import CheckpointLoadError, atomic_torch_save, safe_torch_load

from tests.helpers import ROOT


def test_fastreid_modules_import_in_a_fresh_interpreter():
    code = "import inclr_fastreid, fastreid.data, fastreid.engine, fastreid.evaluation; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_import_without_fastreid_explains_how_to_install(tmp_path):
    # A fake 'fastreid' that fails like a missing package, shadowing the real one.
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'fastreid' or name.startswith('fastreid.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'fastreid'\", name='fastreid')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import inclr_fastreid\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "pip install --no-deps fastreid==1.4.0" in out.stderr


def test_every_fix_applied_once():
    fixes = applied_fixes()
    assert len(fixes) == len(set(fixes)) >= 8
    inclr_fastreid.compat.apply_host_compat()  # idempotent
    assert applied_fixes() == fixes


def test_dataloaderx_iterates_on_cpu_and_shuts_down():
    from fastreid.data.data_utils import DataLoaderX

    ds = [{"x": torch.tensor([i])} for i in range(10)]
    loader = DataLoaderX(0, dataset=ds, batch_size=3, num_workers=0)
    batches = [b["x"].flatten().tolist() for b in loader]
    assert batches == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    it = iter(loader)
    next(it)
    loader.shutdown()
    assert not loader.iter.is_alive()


def test_evaluator_never_compiles_or_exits():
    from fastreid.evaluation import rank as fr_rank
    from fastreid.evaluation import rank_cylib, reid_evaluation

    with pytest.raises(RuntimeError, match="does not compile"):
        rank_cylib.compile_helper()
    assert fr_rank.evaluate_rank.__module__ == "inclr_fastreid.evaluation.rank"
    reid_evaluation.ReidEvaluator._compile_dependencies(object())  # a no-op now


def test_atomic_save_keeps_old_file_when_the_write_fails(tmp_path):
    path = str(tmp_path / "ckpt.pth")
    atomic_torch_save({"w": torch.ones(3)}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_torch_save({"w": torch.zeros(3), "bad": Boom()}, path)
    assert torch.equal(safe_torch_load(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]  # no temporary left behind


def test_safe_load_refuses_arbitrary_pickles_and_truncated_files(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"model": Evil()}, f)
    with pytest.raises(CheckpointLoadError, match="arbitrary unpickling"):
        safe_torch_load(str(evil))
    good = tmp_path / "good.pth"
    torch.save({"model": {"w": torch.ones(1000)}}, good)
    data = good.read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointLoadError, match="truncated or corrupt"):
        safe_torch_load(str(tmp_path / "trunc.pth"))
    with pytest.raises(CheckpointLoadError, match="not found"):
        safe_torch_load(str(tmp_path / "missing.pth"))


def test_fastreid_optimizer_actually_updates_parameters():
    """torch 2's zero_grad(set_to_none=True) would detach FastReID's contiguous gradient views."""
    from fastreid.config import get_cfg
    from fastreid.solver import build_optimizer

    cfg = get_cfg()
    cfg.SOLVER.OPT = "SGD"
    cfg.SOLVER.BASE_LR = 0.1
    model = torch.nn.Linear(3, 1)
    before = model.weight.detach().clone()
    opt, _ = build_optimizer(cfg, model)
    for _ in range(2):
        opt.zero_grad()
        model(torch.ones(4, 3)).sum().backward()
        opt.step()
    assert not torch.allclose(model.weight, before)


def test_test_time_rerank_runs_on_cpu_and_matches_the_dense_definition():
    import numpy as np
    from fastreid.utils import compute_dist

    from tests.helpers.features import clustered, dense_reference

    x = clustered(n=120, d=16, ids=10, seed=3)[0]
    q, g = torch.from_numpy(x[:30]), torch.from_numpy(x[30:])
    got = compute_dist.build_dist(q, g, metric="jaccard", k1=8, k2=3)
    ref = dense_reference(x, 8, 3)[:30, 30:]
    assert got.shape == (30, 90)
    np.testing.assert_allclose(got, ref, atol=1e-5)
