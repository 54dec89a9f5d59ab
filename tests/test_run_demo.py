"""tools/run_demo.py orchestration without training: which train_net calls it makes, with which
overrides, and that the results files it writes are whole."""
import importlib.util
import json
import os
import sys

import pytest

from tiny import ROOT


@pytest.fixture
def demo(monkeypatch):
    spec = importlib.util.spec_from_file_location("run_demo", os.path.join(ROOT, "tools", "run_demo.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    calls = []

    def fake_run(stage, args, out_dir):
        calls.append((os.path.basename(out_dir), list(args)))
        os.makedirs(out_dir, exist_ok=True)
        feature = args[args.index("INCLR.TEST_FEATURE") + 1] if "INCLR.TEST_FEATURE" in args else None
        name = f"eval_{feature}.json" if "--eval-only" in args else "final_results.json"
        with open(os.path.join(out_dir, name), "w") as f:
            json.dump({"mAP": 12.5, "Rank-1": 25.0, "Rank-5": 50.0, "Rank-10": 75.0}, f)
        return 1.0

    monkeypatch.setattr(mod, "_run", fake_run)
    monkeypatch.setattr(mod.subprocess, "run", lambda *a, **k: None)  # no plot_run on fake results
    return mod, calls


def _main(mod, monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["run_demo.py", *argv])
    mod.main()


def _arg(args, key):
    return args[args.index(key) + 1] if key in args else None


def test_seed_and_opts_reach_every_stage(demo, monkeypatch, tmp_path):
    mod, calls = demo
    _main(mod, monkeypatch, "--output-dir", str(tmp_path), "--seed", "3", "--rows", "mmt", "inclr",
          "--opts", "INCLR.CLUSTER.CAMERA_NORM", "True")
    stages = [stage for stage, _ in calls]
    assert stages == ["pretrain", "pretrain2", "direct", "mmt", "inclr"] + ["features"] * len(mod.FEATURES)
    for stage, args in calls:
        assert _arg(args, "INCLR.SEED") == ("4" if stage == "pretrain2" else "3"), stage  # two source seeds
        if stage not in ("pretrain", "pretrain2", "direct"):
            assert "INCLR.CLUSTER.CAMERA_NORM" in args, stage
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["seed"] == 3 and [r["method"] for r in results["rows"]] == [
        "Direct transfer (source only)", "MMT baseline", "INCLR (LGMR+IGMO)"]
    md = (tmp_path / "results.md").read_text()
    assert "--seed 3" in md and "| MMT baseline | 12.5 | 25.0 | 50.0 | 75.0 |" in md
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]  # atomic writes left no temporaries


def test_students_adapt_from_two_source_models(demo, monkeypatch, tmp_path):
    """MMT: student 1 / teacher 1 from the first source model, student 2 / teacher 2 from the second."""
    mod, calls = demo
    _main(mod, monkeypatch, "--output-dir", str(tmp_path), "--rows", "mmt", "inclr", "baseline_uda")
    by_stage = dict(calls)
    first, second = str(tmp_path / "pretrain" / "model_final.pth"), str(tmp_path / "pretrain2" / "model_final.pth")
    assert _arg(by_stage["pretrain"], "--config-file") == _arg(by_stage["pretrain2"], "--config-file") == mod.PRETRAIN_CFG
    assert _arg(by_stage["direct"], "MODEL.WEIGHTS") == first
    for stage in ("mmt", "inclr"):
        assert _arg(by_stage[stage], "MODEL.WEIGHTS") == first and _arg(by_stage[stage], "INCLR.WEIGHTS2") == second
    assert _arg(by_stage["baseline_uda"], "MODEL.WEIGHTS") == first  # one network
    assert "INCLR.WEIGHTS2" not in by_stage["baseline_uda"]
    assert json.loads((tmp_path / "results.json").read_text())["source_models"] == [first, second]


def test_pretrained_source_models_skip_pretraining(demo, monkeypatch, tmp_path):
    mod, calls = demo
    _main(mod, monkeypatch, "--output-dir", str(tmp_path), "--rows", "mmt", "--pretrained", "a.pth", "b.pth")
    assert [stage for stage, _ in calls] == ["direct", "mmt"]
    assert _arg(calls[1][1], "MODEL.WEIGHTS") == os.path.abspath("a.pth")
    assert _arg(calls[1][1], "INCLR.WEIGHTS2") == os.path.abspath("b.pth")
    assert "--pretrained a.pth b.pth" in (tmp_path / "results.md").read_text()


def test_no_seed_leaves_fastreids_random_seed(demo, monkeypatch, tmp_path):
    mod, calls = demo
    _main(mod, monkeypatch, "--output-dir", str(tmp_path), "--rows", "mmt")
    assert [stage for stage, _ in calls] == ["pretrain", "pretrain2", "direct", "mmt"]
    assert all("INCLR.SEED" not in args for _, args in calls)  # each pretraining draws its own seed
    assert json.loads((tmp_path / "results.json").read_text())["seed"] is None
