"""The package as a user installs it: the wheel carries the configs and the ``inclr-train`` /
``inclr-export`` console scripts, and those run from any folder on the installed copy alone.

The wheel is built offline from a copy of the checkout (building in place would write build/ and
*.egg-info into it), installed with ``pip install --target`` into a temporary folder, and run from an
empty folder with only that folder on PYTHONPATH (the dependencies come from this interpreter's
environment)."""
import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml

from inclr_fastreid import __version__  # the checkout the wheel is built from

from tests.helpers import ROOT

REPO_CONFIGS = sorted(os.path.relpath(p, os.path.join(ROOT, "configs")).replace(os.sep, "/")
                      for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.yml"), recursive=True))


def _pip(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "pip", *args, "--no-deps", "--no-index", "--disable-pip-version-check"],
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        f"pip {' '.join(args)} failed (building needs setuptools >= 70.1 in this environment: `make setup` "
        f"installs it):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel path, --target folder) of the checkout built and installed as a user would."""
    tmp = tmp_path_factory.mktemp("package")
    src = tmp / "src"
    src.mkdir()
    for name in os.listdir(ROOT):  # setup.py, MANIFEST.in, README.md, ... (the files setup.py may read)
        if os.path.isfile(os.path.join(ROOT, name)):
            shutil.copy2(os.path.join(ROOT, name), src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("inclr_fastreid", "configs"):
        shutil.copytree(os.path.join(ROOT, name), src / name, ignore=skip)
    _pip("wheel", "--no-build-isolation", "-w", str(tmp / "dist"), str(src))
    (wheel,) = glob.glob(str(tmp / "dist" / "inclr_fastreid-*.whl"))
    _pip("install", "--target", str(tmp / "site"), wheel)
    return wheel, tmp / "site"


def run_installed(site, script, args, cwd):
    """An installed console script, run from ``cwd`` with only ``site`` on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "INCLR_DEBUG")}
    env["PYTHONPATH"] = str(site)
    return subprocess.run([os.path.join(site, "bin", script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_wheel_carries_the_configs_and_the_console_scripts_and_no_tools(installed):
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    shipped = sorted(n[len("inclr_fastreid/configs/"):] for n in names if n.startswith("inclr_fastreid/configs/"))
    assert shipped == REPO_CONFIGS and "INCLR/duke2market.yml" in shipped
    assert "inclr-train = inclr_fastreid.cli.train_net:main" in entry_points
    assert "inclr-export = inclr_fastreid.cli.export_model:main" in entry_points
    assert not [n for n in names if n.startswith(("tools/", "benchmarks/", "research/", "tests/", "configs/")) or "/scripts/" in n]
    print(f"wheel {os.path.basename(wheel)}: {os.path.getsize(wheel)} bytes, {len(names)} files")


def test_inclr_train_reads_the_packaged_config_and_its_base_chain_from_an_empty_folder(installed, tmp_path):
    """configs/INCLR/ablation/duke2market_mmt.yml -> ../duke2market.yml -> ../Base-INCLR.yml, all
    read inside the installed package; the code that ran is the installed copy too."""
    _, site = installed
    proc = run_installed(site, "inclr-train", ["--config-file", "configs/INCLR/ablation/duke2market_mmt.yml",
                                               "--print-config", "INCLR.KAPPA", "0.3"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout.splitlines()
    assert out[0] == f"inclr_fastreid {__version__} from {site / 'inclr_fastreid'}"
    assert out[1] == f"config file: {site / 'inclr_fastreid' / 'configs' / 'INCLR' / 'ablation' / 'duke2market_mmt.yml'}"
    cfg = yaml.safe_load("\n".join(out[2:]))
    assert cfg["OUTPUT_DIR"] == "logs/INCLR/duke2market_mmt" and cfg["INCLR"]["LGMR"]["ENABLED"] is False
    assert cfg["INCLR"]["CLUSTER"]["NUM_CLUSTERS"] == 500
    assert cfg["MODEL"]["META_ARCHITECTURE"] == "INCLR" and cfg["INCLR"]["KAPPA"] == 0.3
    assert os.listdir(tmp_path) == []  # nothing written where it ran


def test_inclr_export_runs_from_an_empty_folder_and_names_where_it_looked(installed, tmp_path):
    _, site = installed
    proc = run_installed(site, "inclr-export", ["--config-file", "configs/INCLR/duke2market.ym", "--weights",
                                                "model.pth", "--output", "out"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.startswith("error: Config file 'configs/INCLR/duke2market.ym' not found. Looked at:\n")
    assert str(tmp_path / "configs" / "INCLR" / "duke2market.ym") in proc.stderr
    assert str(site / "inclr_fastreid" / "configs" / "INCLR" / "duke2market.ym") in proc.stderr
