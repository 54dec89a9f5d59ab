"""Config keys, typos, and cross-key checks."""
import pytest

from inclr_fastreid.config import ConfigError, setup_cfg


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


@pytest.mark.parametrize("key, value, why", [
    ("INCLR.CLUSTER.AUTO_SELECT", "one_se", "its one_se pick drifted finer over a run and trained worse"),
    ("INCLR.CLUSTER.AUTO_PAIRS", "all", "cross_camera was scored on labels only and never adopted"),
])
def test_a_removed_key_is_refused_saying_it_was_removed_and_why(tmp_path, key, value, why):
    """A key removed after its options measured worse (docs/studies.md) is refused as removed, with the reason
    and what runs instead, whether an override or a file sets it (any value, the old default too); no guess."""
    f = tmp_path / "old.yml"
    f.write_text("INCLR:\n  CLUSTER:\n    %s: %s\n" % (key.split(".")[-1], value))
    for config, opts, source in (("", [key, value], "command-line overrides"), (str(f), [], str(f))):
        with pytest.raises(ConfigError) as e:
            setup_cfg(config, opts)
        text = str(e.value)
        assert text.startswith(f"Config key {key!r} in ") and source in text
        assert f"was removed: {why} (docs/studies.md)" in text and "delete the key" in text and "Did you mean" not in text
    with pytest.raises(ConfigError, match="'INCLR.MAX_CLASSES' in command-line overrides was renamed: use "
                                          "INCLR.CLASSIFIER_ROWS"):
        setup_cfg("", ["INCLR.MAX_CLASSES", "10"])


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
