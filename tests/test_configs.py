"""Every shipped config loads (with the add-on's keys, _BASE_ chains, no typos) and builds its model."""
import glob
import os

import pytest

from inclr_fastreid.config import setup_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.yml"), recursive=True))


def test_all_task_configs_are_present():
    names = {os.path.relpath(p, os.path.join(ROOT, "configs")) for p in CONFIGS}
    expected = {"Base-INCLR.yml", "Pretrain/duke.yml", "Pretrain/market.yml", "Pretrain/synthetic.yml"}
    expected |= {f"INCLR/{t}.yml" for t in ("duke2market", "market2duke", "duke2msmt", "market2msmt", "synthetic")}
    expected |= {f"INCLR/ablation/{t}_{a}.yml" for t in ("duke2market", "synthetic") for a in ("mmt", "lgmr", "igmo")}
    expected |= {f"Pretrain/{t}.yml" for t in ("duke2market", "market2duke", "duke2msmt", "market2msmt")}
    assert expected <= names


TASKS = {"duke2market": ("DukeMTMC", "Market1501"), "market2duke": ("Market1501", "DukeMTMC"),
         "duke2msmt": ("DukeMTMC", "MSMT17UDA"), "market2msmt": ("Market1501", "MSMT17UDA"),
         "synthetic": ("SynthA", "SynthB")}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_each_task_pretrains_two_source_models_with_target_bn_and_adapts_from_both(task):
    """DESIGN.md §4.2: per-pair pretraining with the target's BN statistics, two seeds, and the
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
