"""benchmarks/benchmark_round.py --small run whole (the round-cost benchmark in CI): one round of extraction,
clustering, training and checkpointing, its printed stages, shares and 100-round projection, and its JSON report.
The pieces its memory breakdown rests on are tested in tests/tools/test_benchmark_round.py."""
import json
import os
import re
import subprocess
import sys

import pytest

from tests.helpers.tiny import ROOT

TOOL = os.path.join(ROOT, "benchmarks", "benchmark_round.py")


def _num(pattern, text):
    m = re.search(pattern, text, re.M)
    assert m, f"no line matching {pattern!r} in:\n{text}"
    return [float(g.replace(",", "")) for g in m.groups()]


def test_small_round_prints_stages_shares_and_projection(tmp_path):
    env = dict(os.environ, FASTREID_DATASETS=str(tmp_path / "datasets"), TMPDIR=str(tmp_path))
    out_json = tmp_path / "round.json"
    proc = subprocess.run([sys.executable, TOOL, "--small", "--json", str(out_json)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    stages = {}
    for key, label in (("extract", r"\(a\) extract, 2 teachers"), ("cluster", r"\(b\) cluster 4 spaces, LGMR, loader"),
                       ("train", r"\(c\) train 400 iters \(extrapolated\)"), ("checkpoint", r"\(d\) checkpoint")):
        stages[key] = _num(rf"^{label}\s+([\d.]+)\s+([\d.]+)%\s+(\d+)", out)
    round_s, round_share = _num(r"^round\s+([\d.]+)\s+([\d.]+)%", out)
    assert round_share == 100.0
    assert sum(v[0] for v in stages.values()) == pytest.approx(round_s, abs=0.03)
    assert sum(v[1] for v in stages.values()) == pytest.approx(100.0, abs=0.3)
    for secs, share, rss in stages.values():
        assert secs > 0 and share == pytest.approx(100 * secs / round_s, abs=0.06) and rss > 0
    rounds, per_round, total, hours = _num(r"^projection: (\d+) rounds x ([\d.]+) s = (\d+) s = ([\d.]+) h", out)
    assert rounds == 100 and per_round == round_s
    assert total == pytest.approx(100 * round_s, abs=1.0) and hours == pytest.approx(total / 3600, abs=0.01)
    mean_ms, = _num(r"is 400 x the mean of 3 measured iterations \(1 warmup excluded\): mean ([\d.]+) ms", out)
    assert stages["train"][0] == pytest.approx(0.4 * mean_ms, rel=1e-3, abs=0.03)
    wait_share, = _num(r"^data wait: ([\d.]+)% of training time", out)
    assert 0 <= wait_share <= 100
    for line in ("parameters, 4 networks", "gradient buffer, 2 students", "Adam state, 2 students",
                 "saved for backward, 2 students: activations", "peak of live tensors", "projected peak at batch 64"):
        assert line in out

    report = json.loads(out_json.read_text())
    assert set(report["times_s"]) == {"extract", "cluster", "train", "checkpoint"}
    assert report["projection_s"] == pytest.approx(100 * report["round_s"])
    b = report["breakdown"]
    assert b["static_bytes"] == b["params_bytes"] + b["buffers_bytes"] + b["grads_bytes"] + b["optimizer_state_bytes"]
    # Adam: exp_avg + exp_avg_sq of the students (+ a step counter per parameter group)
    assert b["optimizer_state_bytes"] == pytest.approx(2 * b["grads_bytes"], abs=1024)
    assert b["peak_live_bytes"] >= b["static_bytes"] + b["saved_bytes"]
    assert b["saved_bytes"] > 0 and b["batch_images"] == 16 and report["breakdown_half_batch"]["batch_images"] == 8
    assert not any(n.startswith("bench_round_ckpt_") for n in os.listdir(tmp_path))  # checkpoint deleted
