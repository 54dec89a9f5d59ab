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


def test_seed_and_opts_reach_every_stage(demo, monkeypatch, tmp_path):
    mod, calls = demo
    _main(mod, monkeypatch, "--output-dir", str(tmp_path), "--seed", "3", "--rows", "mmt", "inclr",
          "--opts", "INCLR.CLUSTER.CAMERA_NORM", "True")
    stages = [stage for stage, _ in calls]
    assert stages == ["pretrain", "direct", "mmt", "inclr"] + ["features"] * len(mod.FEATURES)
    for stage, args in calls:
        i = args.index("INCLR.SEED")
        assert args[i + 1] == "3", stage
        if stage not in ("pretrain", "direct"):
            assert "INCLR.CLUSTER.CAMERA_NORM" in args, stage
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["seed"] == 3 and [r["method"] for r in results["rows"]] == [
        "Direct transfer (source only)", "MMT baseline", "INCLR (LGMR+IGMO)"]
    md = (tmp_path / "results.md").read_text()
    assert "--seed 3" in md and "| MMT baseline | 12.5 | 25.0 | 50.0 | 75.0 |" in md
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]  # atomic writes left no temporaries


def test_no_seed_leaves_fastreids_random_seed(demo, monkeypatch, tmp_path):
    mod, calls = demo
    _main(mod, monkeypatch, "--output-dir", str(tmp_path), "--rows", "mmt")
    assert [stage for stage, _ in calls] == ["pretrain", "direct", "mmt"]
    assert all("INCLR.SEED" not in args for _, args in calls)
    assert json.loads((tmp_path / "results.json").read_text())["seed"] is None
