"""End to end through tools/train_net.py on tiny folders in the real on-disk layouts (CPU).

Pretrain on DukeMTMC-reID with configs/Pretrain/duke2market.yml (Market's BN statistics), adapt to
Market-1501 with configs/INCLR/duke2market.yml, evaluate global / part / joint features (Table II
rows), and mix the pseudo-label hook into FastReID's stock Baseline.
"""
import glob
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from inclr_fastreid.modeling.pseudo_classes import rows_for_clusters

from tests.helpers.layouts import make_dukemtmc, make_market1501

from tests.helpers.tiny import PRETRAIN_CFG, ROOT, SMALL_NET, TINY_CLUSTER, TRAIN_NET, run_main_in_process
from tests.helpers.tiny import TINY as _TINY

# OSNet x0.25: every INCLR checkpoint here is a few MB, not 360 MB (ResNet-18 x 4 networks + Adam).
TINY = _TINY + SMALL_NET


def run(args, datasets, cwd, timeout=600):
    env = dict(os.environ, FASTREID_DATASETS=str(datasets), PYTHONUNBUFFERED="1")
    res = subprocess.run([sys.executable, TRAIN_NET] + args, cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert res.returncode == 0, (res.stdout[-4000:] + "\n" + res.stderr[-4000:])
    return res.stdout + res.stderr


def noise_test_split(folder, seed):
    """Query and gallery images redrawn as noise. The layout's identities are colour-coded: every
    feature of every model scores 100 on them, and a test could not tell two evaluations apart."""
    rng = np.random.default_rng(seed)
    for sub in ("query", "bounding_box_test"):
        for path in sorted(glob.glob(os.path.join(folder, sub, "*.jpg"))):
            Image.fromarray(rng.integers(0, 256, (32, 16, 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def data_and_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = root / "data"
    make_dukemtmc(str(data), num_train=6, num_test=3, seed=1)
    counts = make_market1501(str(data), num_train=6, num_test=10, seed=2)
    noise_test_split(data / "Market-1501-v15.09.15", seed=3)
    pre = root / "pretrain"
    log = run(["--config-file", PRETRAIN_CFG, *TINY, "SOLVER.MAX_EPOCH", "2",
               "SOLVER.WARMUP_ITERS", "0", "OUTPUT_DIR", str(pre)], data, root)
    assert "INCLR.PRETRAIN.TARGET_BN: a batch of Market1501" in log
    assert (pre / "model_final.pth").is_file()
    yield root, data, pre / "model_final.pth", counts
    for ckpt in root.rglob("*.pth"):  # logs and json stay for a look after a failure
        ckpt.unlink()


def test_duke2market_adapts_through_train_net(data_and_source):
    root, data, source, counts = data_and_source
    out = root / "adapt"
    log = run(["--config-file", os.path.join(ROOT, "configs/INCLR/duke2market.yml"), *TINY, *TINY_CLUSTER,
               "MODEL.WEIGHTS", str(source), "INCLR.WEIGHTS2", "", "SOLVER.MAX_EPOCH", "2",
               "INCLR.ITERS_PER_EPOCH", "2", "TEST.EVAL_PERIOD", "2", "OUTPUT_DIR", str(out)], data, root)
    assert "loss_kl" in log and "loss_soft_tri" in log
    assert "both students start identical" in log  # one source model here (two in the real recipe)
    results = json.loads((out / "final_results.json").read_text())
    assert 0.0 <= results["mAP"] <= 100.0 and results["test_feature"] == "joint"
    rounds = [json.loads(line) for line in (out / "pseudo_labels.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rounds] == [0, 1]
    for r in rounds:
        assert r["num_samples"] == counts["train"]
        assert set(r) >= {"num_clusters", "num_outliers", "num_outliers_before_lgmr", "pairwise_fscore_after_lgmr",
                          "nmi_after_lgmr", "ari_before_lgmr", "credibility_auroc", "cross_camera_recall"}
        assert 0.0 <= r["cross_camera_recall"] <= 1.0  # the hook passes the target's camera ids
    # Classifier rows follow the clusters found (grown from one row under DBSCAN), never the true identity count.
    state = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    max_k = max(r["num_clusters"] for r in rounds)
    assert max_k <= state["model"]["student1.heads.weight"].shape[0] <= rows_for_clusters(max_k)
    assert int(state["model"]["current_epoch"]) == 1  # the hook told INCLR the last epoch (AALS warm-up)
    assert "pseudo_labels" in state and state["pseudo_labels"]["labels"].shape == (counts["train"],)

    # Table II: the same checkpoint evaluated with each feature.
    evals = {}
    for feature in ("global", "part1", "joint"):
        run(["--config-file", os.path.join(ROOT, "configs/INCLR/duke2market.yml"), "--eval-only", *TINY,
             "MODEL.WEIGHTS", str(out / "model_final.pth"), "INCLR.TEST_FEATURE", feature,
             "OUTPUT_DIR", str(out / "eval")], data, root)
        got = json.loads((out / "eval" / f"eval_{feature}.json").read_text())
        assert got["test_feature"] == feature and 0.0 <= got["mAP"] <= 100.0
        evals[feature] = got
    # --eval-only with the run's own setting (joint, t1) reproduces the run's final evaluation of the
    # same weights; the other features give other rankings (metrics below 100: test split is noise).
    metrics = ("Rank-1", "Rank-5", "Rank-10", "mAP", "mINP", "metric")
    assert 0.0 < results["mAP"] < 100.0 and results["test_model"] == evals["joint"]["test_model"] == "t1"
    for key in metrics:
        assert evals["joint"][key] == pytest.approx(results[key], abs=1e-6), key
    for a, b in itertools.combinations(evals, 2):
        assert any(abs(evals[a][k] - evals[b][k]) > 1e-6 for k in metrics), (a, b, evals[a], evals[b])


    # Plots of the run (tools/plot_run.py): PNG files with real content.
    env = dict(os.environ, FASTREID_DATASETS=str(data))
    res = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "plot_run.py"), str(out)], cwd=root, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("curves.png", "clusters.png", "ranked_lists.png"):
        png = out / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, name


def test_global_only_mmt_adapts_from_the_source_model_with_parts(data_and_source):
    """configs/INCLR/ablation/synthetic_mmt_global.yml (NUM_PARTS 0, the paper's Table III Baseline) on the
    tiny Market layout, from the shared source model pretrained with three parts, at a fixed eps and k1 as
    run_demo passes them: the part branches are skipped with a log line, the clustering and the checkpoint
    hold the global space alone, and the joint feature evaluates exactly as the global one."""
    root, data, source, counts = data_and_source
    out = root / "mmt_global"
    cfg = os.path.join(ROOT, "configs/INCLR/ablation/synthetic_mmt_global.yml")
    market = ["DATASETS.NAMES", '("Market1501",)', "DATASETS.TESTS", '("Market1501",)']
    run_main_in_process(["--config-file", cfg, *TINY, *TINY_CLUSTER, *market, "MODEL.WEIGHTS", str(source),
                         "INCLR.WEIGHTS2", "", "SOLVER.MAX_EPOCH", "1", "INCLR.ITERS_PER_EPOCH", "2",
                         "TEST.EVAL_PERIOD", "1", "OUTPUT_DIR", str(out)], data, 2)
    log = (out / "log.txt").read_text()
    assert "MODEL.HEADS.NUM_PARTS 0: skipped the 3 part branches of " + str(source) in log
    assert "loss_soft_tri" in log and "loss_kl" not in log  # MMT: no IGMO
    results = json.loads((out / "final_results.json").read_text())
    assert results["test_feature"] == "joint" and 0.0 < results["mAP"] < 100.0
    (r,) = [json.loads(line) for line in (out / "pseudo_labels.jsonl").read_text().splitlines()]
    assert r["num_samples"] == counts["train"] and (r["eps"], r["k1"]) == (0.8, 6)  # the scale as passed
    assert r["pairwise_fscore_before_lgmr"] == r["pairwise_fscore_after_lgmr"]  # no LGMR
    state = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert not [k for k in state["model"] if "part_" in k] and state["pseudo_labels"]["agreement"] is None
    # joint = global with no parts: the --eval-only of the global feature reproduces the run's final evaluation
    run_main_in_process(["--config-file", cfg, "--eval-only", *TINY, *market, "MODEL.WEIGHTS",
                         str(out / "model_final.pth"), "INCLR.TEST_FEATURE", "global", "OUTPUT_DIR", str(out / "eval")],
                        data, 2)
    got = json.loads((out / "eval" / "eval_global.json").read_text())
    for key in ("Rank-1", "Rank-5", "mAP", "mINP"):
        assert got[key] == pytest.approx(results[key], abs=1e-6), key


def test_pseudo_label_hook_mixes_into_stock_baseline(data_and_source):
    """FastReID's Baseline + EmbeddingHead + the hook = a plain clustering-UDA baseline."""
    root, data, source, counts = data_and_source
    out = root / "baseline_uda"
    log = run(["--config-file", os.path.join(ROOT, "configs/Pretrain/duke.yml"), *TINY, *TINY_CLUSTER,
               "DATASETS.NAMES", '("Market1501",)', "DATASETS.TESTS", '("Market1501",)',
               "MODEL.HEADS.NAME", "EmbeddingHead", "MODEL.WEIGHTS", "", "INCLR.CLUSTER.ENABLED", "True",
               "INCLR.ITERS_PER_EPOCH", "2", "SOLVER.MAX_EPOCH", "1", "SOLVER.WARMUP_ITERS", "0",
               "OUTPUT_DIR", str(out)], data, root)
    assert "loss_cls" in log
    rounds = [json.loads(line) for line in (out / "pseudo_labels.jsonl").read_text().splitlines()]
    assert len(rounds) == 1 and rounds[0]["num_samples"] == counts["train"]
    assert rounds[0]["pairwise_fscore_before_lgmr"] == rounds[0]["pairwise_fscore_after_lgmr"]  # no parts


def test_adapting_from_a_missing_source_model_is_an_error(data_and_source, tmp_path):
    root, data, _, _ = data_and_source
    env = dict(os.environ, FASTREID_DATASETS=str(data))
    res = subprocess.run([sys.executable, TRAIN_NET, "--config-file", os.path.join(ROOT, "configs/INCLR/duke2market.yml"),
                          *TINY, "MODEL.WEIGHTS", str(tmp_path / "nope.pth"), "OUTPUT_DIR", str(tmp_path / "o")],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "nope.pth" in res.stderr and "not found" in res.stderr.lower()
