"""FastReID's own trainer and evaluator through tools/train_net.py on the CPU, with the add-on's host compatibility
layer (inclr_fastreid/compat.py); the compatibility fixes themselves are tested in tests/test_compat.py."""
import os
import subprocess
import sys

from tests.helpers import ROOT
from tests.helpers.layouts import make_market1501

SMOKE = os.path.join(ROOT, "tests", "smoke_baseline.yml")


def test_cpu_train_and_eval_with_fastreid_trainer(tmp_path, monkeypatch):
    """FastReID's own loop, hooks, checkpointer and ReidEvaluator, on the CPU, through train_net."""
    make_market1501(str(tmp_path / "data"))
    out = tmp_path / "out"
    env = dict(os.environ, FASTREID_DATASETS=str(tmp_path / "data"))
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file", SMOKE,
           "OUTPUT_DIR", str(out), "SOLVER.MAX_EPOCH", "1"]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert "Evaluation results in csv format" in log and "mAP" in log
    assert (out / "model_final.pth").is_file() and (out / "config.yaml").is_file()
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    # --eval-only on what was just written
    eval_cmd = cmd[:4] + ["--eval-only", "OUTPUT_DIR", str(tmp_path / "ev"),
                          "MODEL.WEIGHTS", str(out / "model_final.pth")]
    res = subprocess.run(eval_cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Rank-1" in res.stdout + res.stderr
