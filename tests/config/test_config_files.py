"""--config-file resolution (inclr_fastreid/config_files.py) and the commands that use it
(inclr_fastreid/cli/), in process: a file that exists wins, else the shipped config of that name, else
an error that lists where it looked. The installed wheel is tested in tests/e2e/test_package.py."""
import glob
import os
import shutil
from pathlib import Path

import pytest
import yaml

from inclr_fastreid import __version__, config_files
from inclr_fastreid.config import setup_cfg
from inclr_fastreid.config_files import config_root, resolve_config_file, shipped_configs
from inclr_fastreid.errors import ConfigError

from tests.helpers import ROOT

REPO_CONFIGS = os.path.join(ROOT, "configs")


@pytest.fixture
def shipped(tmp_path):
    """A copy of the repository's configs/ standing in for the packaged one."""
    root = tmp_path / "site" / "inclr_fastreid" / "configs"
    shutil.copytree(REPO_CONFIGS, root)
    return root


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """An empty working folder (no configs/ in it)."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.mark.parametrize("name", ["configs/INCLR/duke2market.yml", "./configs/INCLR/duke2market.yml",
                                  "INCLR/duke2market.yml", "configs//INCLR/../INCLR/duke2market.yml"])
def test_a_name_not_in_the_working_folder_is_the_shipped_config(shipped, elsewhere, name):
    assert resolve_config_file(name, root=shipped) == str(shipped / "INCLR" / "duke2market.yml")


def test_a_file_in_the_working_folder_wins_and_is_returned_as_given(shipped, elsewhere):
    local = elsewhere / "configs" / "INCLR"
    local.mkdir(parents=True)
    (local / "duke2market.yml").write_text(f"_BASE_: {shipped / 'INCLR' / 'duke2market.yml'}\n")
    assert resolve_config_file("configs/INCLR/duke2market.yml", root=shipped) == "configs/INCLR/duke2market.yml"
    absolute = str(local / "duke2market.yml")
    assert resolve_config_file(absolute, root=shipped) == absolute


def test_a_shipped_configs_base_chain_resolves_inside_the_shipped_folder(shipped, elsewhere):
    """ablation/duke2market_mmt.yml -> ../duke2market.yml -> ../Base-INCLR.yml, read from the copy: a key
    from each of the three files arrives (FastReID's default META_ARCHITECTURE is Baseline)."""
    path = resolve_config_file("configs/INCLR/ablation/duke2market_mmt.yml", root=shipped)
    cfg = setup_cfg(path, [])
    assert cfg.OUTPUT_DIR == "logs/INCLR/duke2market_mmt" and not cfg.INCLR.LGMR.ENABLED  # the file
    assert cfg.INCLR.CLUSTER.METHOD == "kmeans" and cfg.INCLR.CLUSTER.NUM_CLUSTERS == 500  # its _BASE_
    assert cfg.MODEL.META_ARCHITECTURE == "INCLR" and cfg.MODEL.HEADS.NAME == "PartPoolHead"  # the base's base
    os.remove(shipped / "Base-INCLR.yml")  # the chain really is read from the copy
    with pytest.raises(ConfigError, match="Base-INCLR.yml"):
        setup_cfg(path, [])


def test_a_name_found_nowhere_lists_every_place_looked_at(shipped, elsewhere):
    with pytest.raises(ConfigError) as err:
        resolve_config_file("configs/INCLR/duke2markt.yml", root=shipped)
    msg = str(err.value)
    assert "'configs/INCLR/duke2markt.yml' not found" in msg
    assert str(elsewhere / "configs" / "INCLR" / "duke2markt.yml") in msg
    assert str(shipped / "INCLR" / "duke2markt.yml") in msg
    n = len(glob.glob(os.path.join(REPO_CONFIGS, "**", "*.yml"), recursive=True))
    assert f"`inclr-train --list-configs` lists the {n} configs shipped in {shipped}" in msg


@pytest.mark.parametrize("name", ["/nowhere/INCLR/duke2market.yml", "../INCLR/duke2market.yml",
                                  "configs/../../INCLR/duke2market.yml"])
def test_absolute_names_and_names_leaving_the_folder_are_not_looked_up_in_it(shipped, elsewhere, name):
    with pytest.raises(ConfigError) as err:
        resolve_config_file(name, root=shipped)
    looked = str(err.value).split("Looked at:\n")[1].splitlines()
    assert looked[0].strip() == os.path.abspath(name) and not looked[1].startswith("  ")


def test_no_config_file_and_no_shipped_configs(tmp_path, elsewhere, monkeypatch):
    with pytest.raises(ConfigError, match="No --config-file given"):
        resolve_config_file("")
    monkeypatch.setattr(config_files, "PACKAGED_CONFIG_DIR", tmp_path / "a")
    monkeypatch.setattr(config_files, "SOURCE_CONFIG_DIR", tmp_path / "b")
    assert config_root() is None and shipped_configs() == []
    with pytest.raises(ConfigError, match="ships no configs"):
        resolve_config_file("configs/INCLR/duke2market.yml")


def test_the_packaged_copy_comes_before_the_checkouts_configs(tmp_path, monkeypatch):
    packaged, source = tmp_path / "pkg" / "configs", tmp_path / "configs"
    monkeypatch.setattr(config_files, "PACKAGED_CONFIG_DIR", packaged)
    monkeypatch.setattr(config_files, "SOURCE_CONFIG_DIR", source)
    source.mkdir()
    (source / "other.yml").write_text("")
    assert config_root() is None  # a configs/ folder that is not this project's (no Base-INCLR.yml)
    (source / "Base-INCLR.yml").write_text("")
    assert config_root() == source
    packaged.mkdir(parents=True)
    (packaged / "Base-INCLR.yml").write_text("")
    assert config_root() == packaged


def test_in_a_checkout_the_shipped_configs_are_the_repositorys():
    assert config_root() == config_files.SOURCE_CONFIG_DIR == Path(REPO_CONFIGS)
    expected = sorted("configs/" + os.path.relpath(p, REPO_CONFIGS).replace(os.sep, "/")
                      for p in glob.glob(os.path.join(REPO_CONFIGS, "**", "*.yml"), recursive=True))
    assert shipped_configs() == expected and "configs/INCLR/duke2market.yml" in expected


# ------------------------------------------------------------------------------ the commands
def test_inclr_train_list_configs(capsys):
    from inclr_fastreid.cli.train_net import main

    main(["--list-configs"])
    assert capsys.readouterr().out.splitlines() == shipped_configs()


def test_inclr_train_print_config_from_another_folder(elsewhere, capsys):
    from inclr_fastreid.cli.train_net import main

    main(["--config-file", "configs/INCLR/duke2market.yml", "--print-config", "INCLR.CLUSTER.NUM_CLUSTERS", "42"])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"inclr_fastreid {__version__} from {os.path.join(ROOT, 'inclr_fastreid')}"
    assert out[1] == f"config file: {os.path.join(REPO_CONFIGS, 'INCLR', 'duke2market.yml')}"
    cfg = yaml.safe_load("\n".join(out[2:]))
    assert cfg["INCLR"]["CLUSTER"]["NUM_CLUSTERS"] == 42 and cfg["MODEL"]["META_ARCHITECTURE"] == "INCLR"


@pytest.mark.parametrize("command", ["train_net", "export_model"])
def test_a_config_found_nowhere_ends_the_command_with_one_error_line(elsewhere, capsys, monkeypatch, command):
    import importlib

    main = importlib.import_module(f"inclr_fastreid.cli.{command}").main
    monkeypatch.delenv("INCLR_DEBUG", raising=False)
    extra = ["--weights", "x.pth", "--output", "out"] if command == "export_model" else []
    with pytest.raises(SystemExit) as stop:
        main(["--config-file", "configs/INCLR/nope.yml", *extra])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Config file 'configs/INCLR/nope.yml' not found. Looked at:\n")
    assert os.path.join(REPO_CONFIGS, "INCLR", "nope.yml") in err and "Traceback" not in err
