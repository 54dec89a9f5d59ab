"""tools/compare_runs.py: one method across run_demo --seeds folders, paired by seed (hand-made runs)."""
import json
import os
import statistics

import pytest

from tests.helpers.scripts import load_script

compare_runs = load_script("tools/compare_runs.py")

METHOD = "INCLR (LGMR+IGMO)"


def fake_run(folder, maps, eps, prec=0.5, xcam=None):
    runs = []
    for seed, (m, e) in maps.items() if isinstance(maps, dict) else enumerate(zip(maps, eps), start=1):
        rounds = [{"epoch": i, "fscore": 0.3 + 0.1 * i, "precision": prec, "recall": 0.4 + 0.1 * i} for i in range(2)]
        runs.append({"seed": seed, "rows": [{"method": "Direct transfer (source only)", "metrics": {"mAP": 1.0},
                                             "pseudo_labels": {}},
                                            {"method": METHOD, "metrics": {"mAP": m},
                                             "pseudo_labels": {"rounds": rounds}}]})
        os.makedirs(os.path.join(folder, f"seed{seed}", "inclr"))
        with open(os.path.join(folder, f"seed{seed}", "inclr", "pseudo_labels.jsonl"), "w") as f:
            for i, ei in enumerate(e):
                rec = {"epoch": i, "eps": ei, "cluster_seconds": 9.0 if i == 0 else 0.5 + seed}
                if xcam is not None:
                    rec["cross_camera_recall"] = xcam[seed - 1][i]
                f.write(json.dumps(rec) + "\n")
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"runs": runs}, f)


def test_paired_differences_means_and_eps_per_round(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    fake_run(a, [50.0, 54.0, 52.0], [[0.6, 0.6]] * 3)
    fake_run(b, [47.0, 50.0, 52.0], [[0.4, 0.5], [0.5, 0.5], [0.45, 0.6]], prec=0.8,
             xcam=[[0.2, 0.5], [0.3, 0.6], [0.4, 0.4]])
    lines = compare_runs.compare([("fixed", compare_runs.load_run(a, METHOD)), ("auto", compare_runs.load_run(b, METHOD))])
    fixed_row, auto_row = lines[-2], lines[-1]
    d = [-3.0, -4.0, 0.0]
    assert f"| {statistics.mean(d):.1f} ± {statistics.stdev(d):.1f} |" in auto_row  # paired, not difference of means
    assert "| 52.0 ± 2.0 | – |" in fixed_row and "47.0 / 50.0 / 52.0" in auto_row
    assert "0.45 / 0.53 |" in auto_row and "0.60 / 0.60 |" in fixed_row  # eps per round, mean over seeds
    assert "0.80 / 0.40 → 0.80 / 0.50" in auto_row and "| 40.0 ± 0.0 |" in auto_row  # last round F in %
    assert auto_row.endswith("| 2.50 (1.50–3.50) |")  # round 0 (one-off compilation) left out
    assert "| 0.30 → 0.50 | 0.45" in auto_row  # cross-camera recall of round 0 and of the last round, mean over seeds
    assert "| – | 0.60" in fixed_row  # a label log without the recall (older runs) shows none


def test_only_shared_seeds_are_paired_and_errors_name_the_fix(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    fake_run(a, {1: (50.0, [0.6]), 2: (60.0, [0.6])}, None)
    fake_run(b, {2: (55.0, [0.5]), 3: (99.0, [0.5])}, None)
    lines = compare_runs.compare([("x", compare_runs.load_run(a, METHOD)), ("y", compare_runs.load_run(b, METHOD))])
    assert lines[0].startswith("Seeds 2;") and "| 55.0 | -5.0 |" in lines[-1]
    with pytest.raises(SystemExit, match="run tools/run_demo.py --seeds"):
        compare_runs.load_run(str(tmp_path / "missing"), METHOD)
    with pytest.raises(SystemExit, match="no row named"):
        compare_runs.load_run(a, "+LGMR")
