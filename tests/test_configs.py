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
    assert expected <= names


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
    if "msmt" in os.path.basename(path):
        assert cfg.DATASETS.NAMES == ("MSMT17UDA",)  # list_train + list_val, never query/gallery
