"""Every shipped config loads (with the add-on's keys, _BASE_ chains, no typos) and builds its model."""
import glob
import os

import pytest
import torch

from inclr_fastreid.config import setup_cfg

from tests.helpers import ROOT

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.yml"), recursive=True))


def test_all_task_configs_are_present():
    names = {os.path.relpath(p, os.path.join(ROOT, "configs")) for p in CONFIGS}
    expected = {"Base-INCLR.yml", "Pretrain/duke.yml", "Pretrain/market.yml", "Pretrain/synthetic.yml"}
    expected |= {f"INCLR/{t}.yml" for t in ("duke2market", "market2duke", "duke2msmt", "market2msmt", "synthetic")}
    expected |= {f"INCLR/ablation/{t}_{a}.yml" for t in ("duke2market", "synthetic") for a in ("mmt", "lgmr", "igmo")}
    expected |= {f"Pretrain/{t}.yml" for t in ("duke2market", "market2duke", "duke2msmt", "market2msmt")}
    expected |= {f"INCLR/{t}_dbscan.yml" for t in ("duke2market", "market2duke", "duke2msmt", "market2msmt")}
    expected |= {f"INCLR/ablation/{t}_mmt_global.yml"
                 for t in ("duke2market", "market2duke", "duke2msmt", "market2msmt", "synthetic")}
    assert expected <= names


TASKS = {"duke2market": ("DukeMTMC", "Market1501"), "market2duke": ("Market1501", "DukeMTMC"),
         "duke2msmt": ("DukeMTMC", "MSMT17UDA"), "market2msmt": ("Market1501", "MSMT17UDA"),
         "synthetic": ("SynthA", "SynthB")}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_each_task_pretrains_two_source_models_with_target_bn_and_adapts_from_both(task):
    """docs/design.md §4.2: per-pair pretraining with the target's BN statistics, two seeds, and the
    task config reading the two source models as MODEL.WEIGHTS and INCLR.WEIGHTS2."""
    source, target = TASKS[task]
    pre = setup_cfg(os.path.join(ROOT, "configs", "Pretrain", f"{task}.yml"), ["MODEL.DEVICE", "cpu"])
    assert pre.DATASETS.NAMES == (source,) and pre.DATASETS.TESTS == (target,)
    assert pre.INCLR.PRETRAIN.TARGET_BN and pre.INCLR.PRETRAIN.TARGET_DATASETS == (target,)
    adapt = setup_cfg(os.path.join(ROOT, "configs", "INCLR", f"{task}.yml"), ["MODEL.DEVICE", "cpu"])
    assert adapt.DATASETS.NAMES == (target,)
    assert adapt.MODEL.WEIGHTS and adapt.INCLR.WEIGHTS2 and adapt.MODEL.WEIGHTS != adapt.INCLR.WEIGHTS2
    assert adapt.MODEL.WEIGHTS.startswith(pre.OUTPUT_DIR + "/")  # the first pretraining, as configured


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_config_loads_and_builds(path):
    from fastreid.modeling import build_model

    cfg = setup_cfg(path, ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", "False"], freeze=False)
    if cfg.MODEL.HEADS.NUM_CLASSES == 0:  # set by the trainer from the data
        cfg.MODEL.HEADS.NUM_CLASSES = 8
    cfg.freeze()
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0
    if cfg.INCLR.CLUSTER.ENABLED:
        assert cfg.MODEL.META_ARCHITECTURE in ("INCLR", "Baseline")
        assert cfg.INCLR.CLUSTER.MAX_DISTANCE >= cfg.INCLR.CLUSTER.EPS
    if "msmt" in os.path.basename(path):  # list_train + list_val, never query/gallery
        if cfg.INCLR.PRETRAIN.TARGET_BN:
            assert cfg.INCLR.PRETRAIN.TARGET_DATASETS == ("MSMT17UDA",)
        else:
            assert cfg.DATASETS.NAMES == ("MSMT17UDA",)


# ---------------------------------------------------------------- switches of every config
# (META_ARCHITECTURE, HEADS.NAME, CLUSTER.ENABLED, LGMR.ENABLED, IGMO.ENABLED, IGMO.DETACH_WEIGHT),
# written from docs/design.md §4.4-4.5 / paper Table III, not read from the files.
INCLR_FULL = ("INCLR", "PartPoolHead", True, True, True, True)
MMT_ONLY = ("INCLR", "PartPoolHead", True, False, False, True)
PLUS_LGMR = ("INCLR", "PartPoolHead", True, True, False, True)
PLUS_IGMO = ("INCLR", "PartPoolHead", True, False, True, True)
SWITCHES = {
    "Base-INCLR.yml": INCLR_FULL,
    "INCLR/duke2market.yml": INCLR_FULL,
    "INCLR/market2duke.yml": INCLR_FULL,
    "INCLR/duke2msmt.yml": INCLR_FULL,
    "INCLR/market2msmt.yml": INCLR_FULL,
    "INCLR/duke2market_dbscan.yml": INCLR_FULL,
    "INCLR/market2duke_dbscan.yml": INCLR_FULL,
    "INCLR/duke2msmt_dbscan.yml": INCLR_FULL,
    "INCLR/market2msmt_dbscan.yml": INCLR_FULL,
    "INCLR/synthetic.yml": INCLR_FULL,
    "INCLR/ablation/duke2market_mmt.yml": MMT_ONLY,
    "INCLR/ablation/duke2market_lgmr.yml": PLUS_LGMR,
    "INCLR/ablation/duke2market_igmo.yml": PLUS_IGMO,
    "INCLR/ablation/synthetic_mmt.yml": MMT_ONLY,
    "INCLR/ablation/synthetic_lgmr.yml": PLUS_LGMR,
    "INCLR/ablation/synthetic_igmo.yml": PLUS_IGMO,
    "INCLR/ablation/synthetic_undetached.yml": ("INCLR", "PartPoolHead", True, True, True, False),
    # The paper's Table III "Baseline" as MMT's reference code trains it: MMT_ONLY with NUM_PARTS 0.
    **{f"INCLR/ablation/{t}_mmt_global.yml": MMT_ONLY
       for t in ("duke2market", "market2duke", "duke2msmt", "market2msmt", "synthetic")},
    # Source pretraining: supervised, no clustering (the INCLR.* keys keep their defaults).
    "Pretrain/Base-Pretrain.yml": ("Baseline", "PartPoolHead", False, True, True, True),
    "Pretrain/duke.yml": ("Baseline", "PartPoolHead", False, True, True, True),
    "Pretrain/market.yml": ("Baseline", "PartPoolHead", False, True, True, True),
    "Pretrain/synthetic.yml": ("Baseline", "PartPoolHead", False, True, True, True),
    "Pretrain/duke2market.yml": ("Baseline", "PartPoolHead", False, True, True, True),
    "Pretrain/market2duke.yml": ("Baseline", "PartPoolHead", False, True, True, True),
    "Pretrain/duke2msmt.yml": ("Baseline", "PartPoolHead", False, True, True, True),
    "Pretrain/market2msmt.yml": ("Baseline", "PartPoolHead", False, True, True, True),
    # Stock Baseline + PseudoLabelHook.
    "UDA/duke2market_baseline.yml": ("Baseline", "EmbeddingHead", True, True, True, True),
    "UDA/synthetic_baseline.yml": ("Baseline", "PartPoolHead", True, False, True, True),
}
# What each ablation file may change with respect to its _BASE_ (besides OUTPUT_DIR).
ABLATION_DIFF = {
    "mmt": {"INCLR.LGMR.ENABLED", "INCLR.IGMO.ENABLED"},
    "lgmr": {"INCLR.IGMO.ENABLED"},
    "igmo": {"INCLR.LGMR.ENABLED"},
    "undetached": {"INCLR.IGMO.DETACH_WEIGHT"},
    "mmt_global": {"INCLR.LGMR.ENABLED", "INCLR.IGMO.ENABLED", "MODEL.HEADS.NUM_PARTS"},
}
# synthetic_mmt_global.yml also fixes the scale rules that need part views (run_demo passes the MMT row's eps, k1)
SCALE_RULES = {"INCLR.CLUSTER.EPS_RULE", "INCLR.CLUSTER.K1_RULE"}
SMALL = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", "False", "MODEL.BACKBONE.NAME", "build_osnet_backbone",
         "MODEL.BACKBONE.DEPTH", "x0_25", "MODEL.BACKBONE.FEAT_DIM", "128", "MODEL.HEADS.NUM_CLASSES", "8"]


def _flat(node, prefix=""):
    out = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _switches(cfg):
    return (cfg.MODEL.META_ARCHITECTURE, cfg.MODEL.HEADS.NAME, cfg.INCLR.CLUSTER.ENABLED,
            cfg.INCLR.LGMR.ENABLED, cfg.INCLR.IGMO.ENABLED, cfg.INCLR.IGMO.DETACH_WEIGHT)


def test_switch_table_lists_every_config():
    assert {os.path.relpath(p, os.path.join(ROOT, "configs")) for p in CONFIGS} == set(SWITCHES)


@pytest.mark.parametrize("name", sorted(SWITCHES))
def test_config_switches_match_the_table(name):
    cfg = setup_cfg(os.path.join(ROOT, "configs", name), [])
    assert _switches(cfg) == SWITCHES[name]
    # Everything else that Table III holds fixed is the paper's value in every config.
    assert (cfg.INCLR.MMT.SOFT_CE, cfg.INCLR.MMT.SOFT_TRI, cfg.INCLR.IGMO.LAMBDA_KL, cfg.INCLR.IGMO.TEMP,
            cfg.INCLR.KAPPA, cfg.INCLR.TEST_FEATURE, cfg.INCLR.EMA_MOMENTUM) == (0.5, 0.8, 0.5, 20.0, 0.2, "joint", 0.999)


# ---------------------------------------------------------------- the paper's clustering, both readings
# (METHOD, NUM_CLUSTERS, EPS_RULE, K1) of every real-task config, written from the paper and MMT, not read from
# the files: k-means with the paper's K per target (§IV-B: Market 500, Duke 700, MSMT17 1500; MMT
# examples/mmt_train_kmeans.py), and MMT-DBSCAN (examples/mmt_train_dbscan.py: eps from rho, k1 = 20).
KMEANS = {"duke2market": 500, "market2duke": 700, "duke2msmt": 1500, "market2msmt": 1500}
CLUSTERING = {f"INCLR/{t}.yml": ("kmeans", k, "fixed", 30) for t, k in KMEANS.items()}
CLUSTERING.update({f"INCLR/{t}_dbscan.yml": ("dbscan", k, "mmt", 20) for t, k in KMEANS.items()})
CLUSTERING.update({f"INCLR/ablation/duke2market_{a}.yml": ("kmeans", 500, "fixed", 30) for a in ("mmt", "lgmr", "igmo")})
CLUSTERING.update({f"INCLR/ablation/{t}_mmt_global.yml": ("kmeans", k, "fixed", 30) for t, k in KMEANS.items()})


@pytest.mark.parametrize("name", sorted(CLUSTERING))
def test_real_task_configs_cluster_as_the_table_says(name):
    cfg = setup_cfg(os.path.join(ROOT, "configs", name), [])
    c = cfg.INCLR.CLUSTER
    assert (c.METHOD, c.NUM_CLUSTERS, c.EPS_RULE, c.K1) == CLUSTERING[name]
    assert (c.MIN_SAMPLES, c.K2, c.RHO) == (4, 6, 1.6e-3)  # MMT-DBSCAN's min_samples, k2, rho
    assert c.K1_RULE == "fixed"  # the references' k1 as written, not K1_RULE size
    with open(os.path.join(ROOT, "configs", name)) as f:  # the comments say which reading and why
        text = f.read()
    if "ablation" not in name:
        assert ("mmt_train_dbscan.py" if c.METHOD == "dbscan" else "mmt_train_kmeans.py") in text


@pytest.mark.parametrize("task", sorted(KMEANS))
def test_dbscan_reading_differs_from_its_task_only_in_clustering(task):
    before = _flat(setup_cfg(os.path.join(ROOT, "configs", "INCLR", f"{task}.yml"), []))
    after = _flat(setup_cfg(os.path.join(ROOT, "configs", "INCLR", f"{task}_dbscan.yml"), []))
    diff = {k for k, v in after.items() if before[k] != v}
    assert diff == {"INCLR.CLUSTER.METHOD", "INCLR.CLUSTER.EPS_RULE", "INCLR.CLUSTER.K1", "OUTPUT_DIR"}


@pytest.mark.parametrize("name", sorted(n for n in SWITCHES if n.startswith("INCLR/ablation/")))
def test_ablation_changes_only_its_switches(name):
    import yaml

    path = os.path.join(ROOT, "configs", name)
    with open(path) as f:
        base = os.path.normpath(os.path.join(os.path.dirname(path), yaml.safe_load(f)["_BASE_"]))
    before = _flat(setup_cfg(base, []))
    diff = {k for k, v in _flat(setup_cfg(path, [])).items() if before[k] != v}
    kind = name[:-len(".yml")].split("_", 1)[1]
    extra = SCALE_RULES if name == "INCLR/ablation/synthetic_mmt_global.yml" else set()
    assert diff == ABLATION_DIFF[kind] | extra | {"OUTPUT_DIR"}


@pytest.mark.parametrize("name", sorted(n for n, s in SWITCHES.items() if s[0] == "INCLR"))
def test_switches_reach_the_built_model(name):
    from fastreid.modeling import build_model

    model = build_model(setup_cfg(os.path.join(ROOT, "configs", name), SMALL))
    _, _, _, lgmr, igmo, detach = SWITCHES[name]
    losses = model.student_losses
    assert (losses.lgmr_enabled, losses.igmo_enabled, losses.detach_weight) == (lgmr, igmo, detach)


@pytest.mark.parametrize("name", [
    "UDA/duke2market_baseline.yml",
    "UDA/synthetic_baseline.yml",
])
def test_stock_baseline_uda_configs_cluster_without_lgmr(name):
    """The 'plain clustering-UDA baseline' rows: the hook refines labels with LGMR only when
    INCLR.LGMR.ENABLED and the head has part branches (PartPoolHead)."""
    cfg = setup_cfg(os.path.join(ROOT, "configs", name), [])
    assert not (cfg.INCLR.LGMR.ENABLED and cfg.MODEL.HEADS.NAME == "PartPoolHead")


def test_lgmr_min_agreement_default_is_the_designs_zero():
    """docs/design.md §4.4: MIN_AGREEMENT 0 by default (PPLR drops no sample), neighbour-overlap
    agreement and an AALS warm-up of 5 epochs (PPLR), in config.py and in Base-INCLR.yml alike."""
    for cfg in (setup_cfg("", []), setup_cfg(os.path.join(ROOT, "configs", "Base-INCLR.yml"), [])):
        lgmr = cfg.INCLR.LGMR
        assert (lgmr.MIN_AGREEMENT, lgmr.AGREEMENT, lgmr.AALS_EPOCH) == (0.0, "neighbour", 5)


# ---------------------------------------------------------------- the embedded benchmark
SYNTHETIC = ["Pretrain/synthetic.yml", "INCLR/synthetic.yml", "UDA/synthetic_baseline.yml"] + [
    f"INCLR/ablation/synthetic_{a}.yml" for a in ("mmt", "lgmr", "igmo", "undetached")]


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_parts_each_pool_several_rows(name):
    """The backbone's map at the configs' input size gives every part stripe at least 2 rows (the paper's
    256x128 on ResNet-50: ~5), with pretraining and adaptation at the same size."""
    from fastreid.modeling.backbones import build_backbone

    from inclr_fastreid.modeling.heads.part_pool_head import stripe_bounds

    cfg = setup_cfg(os.path.join(ROOT, "configs", name), ["MODEL.DEVICE", "cpu"])
    assert list(cfg.INPUT.SIZE_TRAIN) == list(cfg.INPUT.SIZE_TEST) == [128, 64]
    with torch.no_grad():
        fmap = build_backbone(cfg).eval()(torch.zeros(1, 3, *cfg.INPUT.SIZE_TRAIN))
    rows = [end - start for start, end in stripe_bounds(fmap.shape[2], cfg.MODEL.HEADS.NUM_PARTS)]
    assert min(rows) >= 2, rows


def test_synthetic_adaptation_follows_the_reference_recipe():
    """DBSCAN on the references' Jaccard graph (min_samples 4, K1 30 as the ceiling: SpCL / PPLR) with the
    label-free scales on camera-standardised features (the synthetic configs use auto, k1 from the density),
    the fixed eps left at 0.6 for the other reading, and the AALS switch reached within the 5-round schedule
    (PPLR: after a tenth of it)."""
    for name in ("INCLR/synthetic.yml", "UDA/synthetic_baseline.yml"):
        c = setup_cfg(os.path.join(ROOT, "configs", name), []).INCLR.CLUSTER
        assert (c.METHOD, c.EPS_RULE, c.CAMERA_NORM, c.EPS, c.K1, c.MIN_SAMPLES) == (
            "dbscan", "auto", True, 0.6, 30, 4), name
        assert (c.K1_RULE, c.K1_PER_SIZE, c.K1_MIN) == ("size", 1.5, 10), name
        assert (c.AUTO_COVERAGE, c.EPS_FREEZE) == ("multi_camera", False), name
    cfg = setup_cfg(os.path.join(ROOT, "configs", "INCLR/synthetic.yml"), [])
    assert 0 < cfg.INCLR.LGMR.AALS_EPOCH < cfg.SOLVER.MAX_EPOCH
