"""tools/run_demo.py orchestration without training: which train_net calls it makes, with which
overrides, and that the results files it writes are whole."""
import importlib.util
import json
import os
import sys

import pytest

from tests.helpers.tiny import ROOT


@pytest.fixture
def demo(monkeypatch):
    spec = importlib.util.spec_from_file_location("run_demo", os.path.join(ROOT, "tools", "run_demo.py"))
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "run_demo", mod)  # dataclasses look their module up there
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
        assert _arg(args, "INCLR.SEED") == ("1003" if stage == "pretrain2" else "3"), stage  # two source seeds
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


def _fake_names(mod):
    return ["direct", "mmt", "lgmr", "igmo", "inclr"] + ["change_" + c.key for c in mod.CHANGES] + [
        "mmt_global", "mmt_test_global"]


def _fake_results(monkeypatch, mod, calls):
    """Fake train_net: mAP = 10 * seed + (index of the stage's name in a fixed list), so every seed and row
    differs and the aggregate can be computed by hand; the INCLR rows also write a two-round label log
    (eps 0.4 + seed / 100 and k1 20 + seed in round 0, other values in round 1)."""
    names = _fake_names(mod)

    def fake_run(stage, args, out_dir):
        calls.append((out_dir, list(args)))
        os.makedirs(out_dir, exist_ok=True)
        name = os.path.basename(out_dir)
        seed = int(os.path.basename(os.path.dirname(out_dir))[len("seed"):])
        value = 10.0 * seed + (names.index(name) if name in names else 0)
        feature = args[args.index("INCLR.TEST_FEATURE") + 1] if "INCLR.TEST_FEATURE" in args else "joint"
        fname = f"eval_{feature}.json" if "--eval-only" in args else "final_results.json"
        with open(os.path.join(out_dir, fname), "w") as f:
            json.dump({"mAP": value, "Rank-1": value + 1, "Rank-5": 0.0, "Rank-10": 0.0}, f)
        if "--eval-only" not in args:
            with open(os.path.join(out_dir, "pseudo_labels.jsonl"), "w") as f:
                for epoch, fs in ((0, 0.1 * seed), (1, 0.2 * seed)):
                    f.write(json.dumps({"epoch": epoch, "pairwise_fscore_after_lgmr": fs, "nmi_after_lgmr": 0.5,
                                        "pairwise_precision_after_lgmr": 0.01 * seed, "pairwise_recall_after_lgmr": 0.5,
                                        "num_clusters": 40 + seed, "num_outliers": 3,
                                        "eps": 0.4 + seed / 100 + epoch / 10, "k1": 20 + seed + 5 * epoch}) + "\n")
        return 1.0

    monkeypatch.setattr(mod, "_run", fake_run)


def test_seeds_write_mean_std_and_per_seed_figures(demo, monkeypatch, tmp_path):
    import statistics

    mod, _ = demo
    calls = []
    _fake_results(monkeypatch, mod, calls)
    _main(mod, monkeypatch, "--output-dir", str(tmp_path), "--seeds", "1", "2", "4", "--rows", "all", "--no-features")
    by_dir = {os.path.relpath(d, tmp_path): a for d, a in calls}
    for s in (1, 2, 4):  # every seed: its own two source models (seeds s and s + 1000) and every row
        assert _arg(by_dir[f"seed{s}/pretrain"], "INCLR.SEED") == str(s)
        assert _arg(by_dir[f"seed{s}/pretrain2"], "INCLR.SEED") == str(s + 1000)
        for row in ("mmt", "lgmr", "igmo", "inclr"):
            assert _arg(by_dir[f"seed{s}/{row}"], "MODEL.WEIGHTS") == str(tmp_path / f"seed{s}" / "pretrain" / "model_final.pth")
            assert _arg(by_dir[f"seed{s}/{row}"], "INCLR.SEED") == str(s)
    res = json.loads((tmp_path / "results.json").read_text())
    stages = ["direct", "mmt", "mmt_global", "mmt_test_global", "lgmr", "igmo", "inclr"]
    assert res["seeds"] == [1, 2, 4] and [r["method"] for r in res["rows"]] == [
        "Direct transfer (source only)", "MMT baseline", mod.MMT_GLOBAL, "MMT with parts, global feature at test",
        "+LGMR", "+IGMO", "INCLR (LGMR+IGMO)"]
    for stage, row in zip(stages, res["rows"]):
        i = _fake_names(mod).index(stage)
        want = [10.0 * s + i for s in (1, 2, 4)]
        assert row["mAP"]["per_seed"] == want
        assert row["mAP"]["mean"] == pytest.approx(statistics.mean(want))
        assert row["mAP"]["std"] == pytest.approx(statistics.stdev(want))  # sample std over seeds
        assert row["R1"]["mean"] == pytest.approx(statistics.mean(want) + 1)
    inclr = res["rows"][-1]
    assert inclr["F"]["per_seed"] == pytest.approx([20.0, 40.0, 80.0])  # last round, in percent
    md = (tmp_path / "results.md").read_text()
    assert "--seeds 1 2 4 --rows all --no-features" in md
    # INCLR (index 4) against MMT (index 1) in the same seed: +3 in each, so +3.0 ± 0.0
    assert inclr["delta_mAP_vs_mmt"]["per_seed"] == [3.0, 3.0, 3.0] and "delta_mAP_vs_mmt" not in res["rows"][1]
    assert res["rows"][0]["delta_mAP_vs_mmt"]["mean"] == -1.0  # direct transfer: index 0 - 1
    # and against MMT global only (fake index 12): 4 - 12 in each seed
    g = _fake_names(mod).index("mmt_global")
    assert inclr["delta_mAP_vs_mmt_global"]["per_seed"] == [4.0 - g] * 3
    assert "delta_mAP_vs_mmt_global" not in res["rows"][2]
    assert res["rows"][2]["delta_mAP_vs_mmt"]["per_seed"] == [g - 1.0] * 3
    assert "| Δ mAP vs MMT (paired) | Δ mAP vs MMT global only (paired) |" in md
    assert (f"| INCLR (LGMR+IGMO) | {statistics.mean([14, 24, 44]):.1f} ± {statistics.stdev([14, 24, 44]):.1f} | "
            f"+3.0 ± 0.0 | {4 - g:+.1f} ± 0.0 |") in md
    assert "| MMT baseline | " in md and "| INCLR (LGMR+IGMO) | 0.02 / 0.50 | 0.02 / 0.50 |" in md  # P / R per round
    assert "14.0 / 24.0 / 44.0" in md
    assert "| INCLR (LGMR+IGMO) | 23.3 (42) | 46.7 (42) |" in md  # per-round F (clusters), mean over seeds
    assert os.path.isfile(tmp_path / "seed2" / "results.json")  # and each seed's own table


def test_changes_undo_one_part_of_the_recipe_each(demo, monkeypatch, tmp_path):
    """--changes: INCLR with each per-change item undone alone, from the right source models, with
    only its own overrides; the table's delta is the paired difference to INCLR in the same seed."""
    mod, _ = demo
    calls = []
    _fake_results(monkeypatch, mod, calls)
    _main(mod, monkeypatch, "--output-dir", str(tmp_path), "--seeds", "1", "2", "--changes", "--rows", "mmt",
          "--no-features")
    by_dir = {os.path.relpath(d, tmp_path): a for d, a in calls}
    base = ["--config-file", mod.INCLR_CFG]
    for s in (1, 2):
        own = lambda stage: str(tmp_path / f"seed{s}" / stage / "model_final.pth")  # noqa: E731
        inclr = by_dir[f"seed{s}/inclr"]
        assert inclr[:2] == base and _arg(inclr, "INCLR.WEIGHTS2") == own("pretrain2")
        for ch in mod.CHANGES:
            args = by_dir[f"seed{s}/change_{ch.key}"]
            assert args[:2] == base
            extra = [a for a in args if a not in inclr]
            if ch.key == "one_source":
                assert _arg(args, "MODEL.WEIGHTS") == _arg(args, "INCLR.WEIGHTS2") == own("pretrain")
            elif ch.pretrain is not None:  # its own two source models, pretrained with its overrides
                assert _arg(args, "MODEL.WEIGHTS") == own(f"pretrain_{ch.key}")
                assert _arg(args, "INCLR.WEIGHTS2") == own(f"pretrain2_{ch.key}")
                for stage, seed in ((f"pretrain_{ch.key}", s), (f"pretrain2_{ch.key}", s + 1000)):
                    pre = by_dir[f"seed{s}/{stage}"]
                    assert all(o in pre for o in ch.pretrain) and _arg(pre, "INCLR.SEED") == str(seed)
            else:
                assert _arg(args, "MODEL.WEIGHTS") == own("pretrain") and _arg(args, "INCLR.WEIGHTS2") == own("pretrain2")
            for key, value in zip(ch.adapt[::2], ch.adapt[1::2]):
                assert _arg(args, key) == value, (ch.key, key)
            assert set(extra) <= set(ch.adapt) | {own(f"pretrain_{ch.key}"), own(f"pretrain2_{ch.key}"),
                                                  str(tmp_path / f"seed{s}" / f"change_{ch.key}")}, (ch.key, extra)
    res = json.loads((tmp_path / "results.json").read_text())
    names = ["direct", "mmt", "lgmr", "igmo", "inclr"]
    for i, c in enumerate(res["changes"]):
        # mAP = 10 s + 5 + i, INCLR's = 10 s + 4: the paired difference is i + 1 in both seeds, std 0
        assert c["delta_mAP_vs_inclr"]["per_seed"] == [i + 1.0, i + 1.0] and c["delta_mAP_vs_inclr"]["std"] == 0
        assert c["key"] == mod.CHANGES[i].key and len(names) + i == 5 + i
    md = (tmp_path / "results.md").read_text()
    assert "--seeds 1 2 --rows mmt --changes --no-features" in md and "| +1.0 ± 0.0 |" in md


def test_changes_can_be_picked_by_key(demo, monkeypatch, tmp_path):
    mod, calls = demo
    _main(mod, monkeypatch, "--output-dir", str(tmp_path), "--seed", "1", "--changes", "low_res", "one_source",
          "--rows", "mmt", "--no-features")
    stages = [stage for stage, _ in calls]
    assert stages == ["pretrain", "pretrain2", "direct", "mmt", "inclr", "change_one_source", "pretrain_low_res",
                      "pretrain2_low_res", "change_low_res"]  # CHANGES' order, only the named ones
    assert [c["key"] for c in json.loads((tmp_path / "results.json").read_text())["changes"]] == ["one_source", "low_res"]


def test_results_name_the_target_the_source_models_and_a_pasteable_command(demo, monkeypatch, tmp_path):
    """A run on SynthB10 from two --pretrained source models says so: the header names SynthB10 (not the
    default SynthB), the seeds share the source models, and the printed --opts survive a shell round trip."""
    import shlex

    mod, _ = demo
    calls = []
    _fake_results(monkeypatch, mod, calls)
    opts = ["DATASETS.NAMES", "('SynthB10',)", "INCLR.CLUSTER.K1", "15"]
    _main(mod, monkeypatch, "--output-dir", str(tmp_path), "--seeds", "2", "3", "--rows", "inclr", "--no-features",
          "--pretrained", "a.pth", "b.pth", "--opts", *opts)
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("### Synthetic benchmark SynthA → SynthB10, seeds 2 3")
    assert "all from the two --pretrained source models" in md and "its own two source models" not in md
    command = md.split("`")[1]
    assert shlex.split(command)[-len(opts):] == opts
    assert json.loads((tmp_path / "results.json").read_text())["benchmark"].startswith("synthetic (SynthA -> SynthB10)")
    _main(mod, monkeypatch, "--output-dir", str(tmp_path / "b"), "--seeds", "1", "--rows", "inclr", "--no-features")
    md = (tmp_path / "b" / "results.md").read_text()
    assert md.startswith("### Synthetic benchmark SynthA → SynthB, seeds 1")
    assert "its own two source models and adaptation runs" in md


def test_clustering_changes_put_back_the_references_scale_on_the_synthetic_config(demo):
    """--changes fixed_eps / mmt_eps on today's synthetic config (auto, K1_RULE size, CAMERA_NORM) cluster as
    the references do: eps 0.6 at k1 30 (SpCL / PPLR) and MMT's rho rule at k1 20, each k1 as written."""
    from inclr_fastreid.config import setup_cfg
    from inclr_fastreid.pseudo_labels import cluster_params_from_cfg

    mod, _ = demo
    default = cluster_params_from_cfg(setup_cfg(os.path.join(ROOT, mod.INCLR_CFG), []))
    assert (default.eps_rule, default.k1_rule, default.camera_norm) == ("auto", "size", True)
    expected = {"fixed_eps": ("fixed", 0.6, 30, "fixed", False), "mmt_eps": ("mmt", 0.6, 20, "fixed", False)}
    for ch in (c for c in mod.CHANGES if c.key in expected):
        p = cluster_params_from_cfg(setup_cfg(os.path.join(ROOT, mod.INCLR_CFG), list(ch.adapt)))
        assert (p.eps_rule, p.eps, p.k1, p.k1_rule, p.camera_norm) == expected.pop(ch.key), ch.key
    assert not expected


def test_global_only_rows_take_the_mmt_rows_scale_and_model(demo, monkeypatch, tmp_path):
    """MMT (global only) clusters at the eps and k1 of the MMT row's *first* round in the same seed, from the
    same two source models; "MMT with parts, global feature at test" is an --eval-only of the MMT row's model
    with INCLR.TEST_FEATURE global. Asking for either runs the MMT row first."""
    mod, _ = demo
    calls = []
    _fake_results(monkeypatch, mod, calls)
    _main(mod, monkeypatch, "--output-dir", str(tmp_path), "--seeds", "3", "--rows", "mmt_test_global", "mmt_global",
          "--no-features", "--opts", "INCLR.CLUSTER.CAMERA_NORM", "True")
    by_dir = {os.path.relpath(d, tmp_path): a for d, a in calls}
    assert list(by_dir) == [f"seed3/{s}" for s in ("pretrain", "pretrain2", "direct", "mmt", "mmt_global",
                                                   "mmt_test_global")]
    glob_args, mmt_args = by_dir["seed3/mmt_global"], by_dir["seed3/mmt"]
    assert _arg(glob_args, "--config-file") == "configs/INCLR/ablation/synthetic_mmt_global.yml"
    for key in ("MODEL.WEIGHTS", "INCLR.WEIGHTS2", "INCLR.SEED", "INCLR.CLUSTER.CAMERA_NORM"):
        assert _arg(glob_args, key) == _arg(mmt_args, key), key
    # round 0 of the fake MMT log: eps 0.4 + 3/100, k1 20 + 3 (round 1 has 0.53 and 28)
    assert (_arg(glob_args, "INCLR.CLUSTER.EPS_RULE"), _arg(glob_args, "INCLR.CLUSTER.K1_RULE")) == ("fixed", "fixed")
    assert float(_arg(glob_args, "INCLR.CLUSTER.EPS")) == 0.4 + 3 / 100 and _arg(glob_args, "INCLR.CLUSTER.K1") == "23"
    ev = by_dir["seed3/mmt_test_global"]
    assert "--eval-only" in ev and _arg(ev, "--config-file") == mod.MMT_CFG
    assert _arg(ev, "MODEL.WEIGHTS") == str(tmp_path / "seed3" / "mmt" / "model_final.pth")
    assert _arg(ev, "INCLR.TEST_FEATURE") == "global" and _arg(ev, "INCLR.SEED") == "3"
    res = json.loads((tmp_path / "results.json").read_text())
    names = _fake_names(mod)
    assert [(r["method"], r["mAP"]["per_seed"]) for r in res["rows"]] == [
        ("Direct transfer (source only)", [30.0]), ("MMT baseline", [31.0]),
        (mod.MMT_GLOBAL, [30.0 + names.index("mmt_global")]),
        ("MMT with parts, global feature at test", [30.0 + names.index("mmt_test_global")])]

    # The synthetic config these overrides go to takes them: fixed rules at the MMT row's scale.
    from inclr_fastreid.config import setup_cfg
    from inclr_fastreid.pseudo_labels import cluster_params_from_cfg

    p = cluster_params_from_cfg(setup_cfg(os.path.join(ROOT, _arg(glob_args, "--config-file")),
                                          mod.first_round_scale_opts(str(tmp_path / "seed3" / "mmt"))))
    assert (p.eps_rule, p.eps, p.k1_rule, p.k1, p.camera_norm) == ("fixed", 0.4 + 3 / 100, "fixed", 23, True)


def test_global_only_row_needs_the_mmt_rows_recorded_scale(demo, tmp_path):
    mod, _ = demo
    (tmp_path / "mmt").mkdir()
    with open(tmp_path / "mmt" / "pseudo_labels.jsonl", "w") as f:  # a k-means run records no eps
        f.write(json.dumps({"epoch": 0, "eps": None, "k1": None}) + "\n")
    with pytest.raises(SystemExit, match="pseudo_labels.jsonl: no eps / k1"):
        mod.first_round_scale_opts(str(tmp_path / "mmt"))
    with pytest.raises(SystemExit, match="no eps / k1"):
        mod.first_round_scale_opts(str(tmp_path / "missing"))


def test_combine_rebuilds_the_multi_seed_table_from_the_seeds_results_files(demo, monkeypatch, tmp_path):
    """--combine: the per-seed results.json files of a --seeds run give back that run's table and aggregate
    (every row's per-seed values, means and paired deltas), running nothing; files in another seed order, of
    another count or mixing --quick are refused naming the problem."""
    mod, calls = demo
    flags = ["--seeds", "1", "2", "--rows", "mmt", "inclr", "--no-features"]
    _main(mod, monkeypatch, *flags, "--output-dir", str(tmp_path / "ran"))
    ran = json.loads((tmp_path / "ran" / "results.json").read_text())
    files = [str(tmp_path / "ran" / f"seed{s}" / "results.json") for s in (1, 2)]
    n_calls = len(calls)
    _main(mod, monkeypatch, *flags, "--combine", *files, "--output-dir", str(tmp_path / "combined"))
    assert len(calls) == n_calls  # nothing trained or evaluated
    combined = json.loads((tmp_path / "combined" / "results.json").read_text())
    assert combined["rows"] == ran["rows"] and combined["seeds"] == ran["seeds"] == [1, 2]
    assert combined["runs"] == ran["runs"]
    table = (tmp_path / "combined" / "results.md").read_text()
    assert "assembled with --combine" in table and "--seeds 1 2 --rows mmt inclr --no-features" in table
    # The table names where the seeds ran (from their files), not the machine assembling it: each seed's
    # machine, with its GPU where it had one; a file from before `device` was recorded gives its machine alone.
    elsewhere = [json.loads(open(f).read()) for f in files]
    elsewhere[0].update(machine="x86_64, 16 CPUs, Python 3.11.7", device="GPU Test Card A")
    del elsewhere[1]["device"]
    elsewhere[1]["machine"] = "ppc64le, 8 CPUs, Python 3.12.0"
    for i, payload in enumerate(elsewhere):
        (tmp_path / f"elsewhere{i}.json").write_text(json.dumps(payload))
    _main(mod, monkeypatch, *flags, "--combine", *[str(tmp_path / f"elsewhere{i}.json") for i in range(2)],
          "--output-dir", str(tmp_path / "elsewhere"))
    table = (tmp_path / "elsewhere" / "results.md").read_text()
    where = "x86_64, 16 CPUs, Python 3.11.7, GPU Test Card A; ppc64le, 8 CPUs, Python 3.12.0"
    assert f"` on {where}, " in table
    assert json.loads((tmp_path / "elsewhere" / "results.json").read_text())["machine"] == where
    for bad, message in ((["--seeds", "2", "1", "--combine", *files], "holds seed 1, expected 2"),
                         (["--seeds", "1", "2", "--combine", files[0]], r"1 file\(s\) for 2 seed\(s\)"),
                         (["--seeds", "1", "2", "--combine", files[0], str(tmp_path / "none.json")], "cannot read")):
        with pytest.raises(SystemExit, match=message):
            _main(mod, monkeypatch, *bad, "--output-dir", str(tmp_path / "bad"))
    quick = json.loads(open(files[1]).read())
    quick["quick"] = True
    (tmp_path / "quick.json").write_text(json.dumps(quick))
    with pytest.raises(SystemExit, match="mix --quick and full runs"):
        _main(mod, monkeypatch, "--seeds", "1", "2", "--combine", files[0], str(tmp_path / "quick.json"),
              "--output-dir", str(tmp_path / "bad"))
