"""Config keys, typos, and cross-key checks."""
import os

import pytest

from inclr_fastreid.config import ConfigError, setup_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_are_the_papers():
    cfg = setup_cfg("", [])
    assert cfg.INCLR.KAPPA == 0.2 and cfg.INCLR.IGMO.TEMP == 20.0 and cfg.INCLR.IGMO.LAMBDA_KL == 0.5
    assert cfg.MODEL.HEADS.NUM_PARTS == 3 and cfg.INCLR.EMA_MOMENTUM == 0.999
    assert (cfg.INCLR.CLUSTER.EPS, cfg.INCLR.CLUSTER.MIN_SAMPLES, cfg.INCLR.CLUSTER.K1, cfg.INCLR.CLUSTER.K2) == (0.6, 4, 30, 6)
    assert (cfg.INCLR.MMT.SOFT_CE, cfg.INCLR.MMT.SOFT_TRI) == (0.5, 0.8)
    assert cfg.INCLR.ITERS_PER_EPOCH == 400 and cfg.INCLR.TEST_FEATURE == "joint"


def test_misspelled_override_names_the_key_and_a_suggestion():
    with pytest.raises(ConfigError) as e:
        setup_cfg("", ["INCLR.IGMO.TEMPERATURE", "20"])
    assert "INCLR.IGMO.TEMPERATURE" in str(e.value) and "INCLR.IGMO.TEMP" in str(e.value)


def test_misspelled_key_in_a_file_names_the_file(tmp_path):
    f = tmp_path / "bad.yml"
    f.write_text("INCLR:\n  KAPA: 0.3\n")
    with pytest.raises(ConfigError) as e:
        setup_cfg(str(f), [])
    assert "INCLR.KAPA" in str(e.value) and str(f) in str(e.value) and "INCLR.KAPPA" in str(e.value)


def test_missing_file_and_odd_overrides():
    with pytest.raises(ConfigError, match="not found"):
        setup_cfg("no/such.yml", [])
    with pytest.raises(ConfigError, match="KEY VALUE"):
        setup_cfg("", ["INCLR.KAPPA"])


def test_cross_key_checks():
    with pytest.raises(ConfigError, match="MAX_DISTANCE"):
        setup_cfg("", ["INCLR.CLUSTER.EPS", "0.95"])
    with pytest.raises(ConfigError, match="TEST_FEATURE"):
        setup_cfg("", ["INCLR.TEST_FEATURE", "part4"])
    with pytest.raises(ConfigError, match="TEST_MODEL"):
        setup_cfg("", ["INCLR.TEST_MODEL", "student"])


def test_cuda_device_falls_back_to_cpu_without_gpu():
    import torch

    cfg = setup_cfg("", ["MODEL.DEVICE", "cuda"])
    assert cfg.MODEL.DEVICE == ("cuda" if torch.cuda.is_available() else "cpu")
