"""User mistakes end with one ``error: <message>`` line on stderr, exit status 2 and no traceback;
bugs keep their traceback; ``INCLR_DEBUG=1`` shows the traceback of user errors too.

Each case runs ``tools/train_net.py`` (or ``tools/export_model.py``) as a user would, in a
subprocess, on tiny folders in the real layouts; the errors that need a running trainer (an
unreadable image, more clusters than classifier rows, a non-finite loss) stop at the first clustering
or the first steps of a 36-image OSNet x0.25 run.
"""
import glob
import os
import subprocess
import sys

import pytest
import torch

from tests.helpers.layouts import make_market1501

from tests.helpers.tiny import ROOT, SMALL_NET, TINY, TINY_CLUSTER, TRAIN_NET

CFG = os.path.join(ROOT, "configs", "INCLR", "duke2market.yml")
EXPORT = os.path.join(ROOT, "tools", "export_model.py")
RUN = TINY + SMALL_NET + TINY_CLUSTER + ["MODEL.WEIGHTS", "", "INCLR.SEED", "7", "SOLVER.MAX_EPOCH", "2",
                                        "INCLR.ITERS_PER_EPOCH", "2", "TEST.EVAL_PERIOD", "100"]


def run(script, args, cwd, datasets=None, debug=False, timeout=300):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("INCLR_DEBUG", None)
    if debug:
        env["INCLR_DEBUG"] = "1"
    if datasets is not None:
        env["FASTREID_DATASETS"] = str(datasets)
    proc = subprocess.run([sys.executable, script] + [str(a) for a in args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def assert_user_error(rc, out, err, *fragments):
    """Exit status 2, one ``error:`` line naming every fragment, no traceback anywhere."""
    both = out + err
    assert rc == 2, f"rc={rc}\n{both[-4000:]}"
    assert "Traceback" not in both, both[-4000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err[-4000:]
    message = err[err.index("error: "):]
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    return message


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("ue_market")
    make_market1501(str(root), num_train=6, num_test=4, seed=2)
    return root


# ------------------------------------------------------------------------------ config
@pytest.mark.parametrize("opts, fragments", [
    (["SOLVER.BASE_LRR", "0.1"], ["Unknown config key 'SOLVER.BASE_LRR'", "Did you mean SOLVER.BASE_LR"]),
    (["DATASETS.NAMES", '("Market1502",)'], ["DATASETS.NAMES: 'Market1502' is not registered", "Market1501"]),
    (["SOLVER.IMS_PER_BATCH", "sixty-four"], ["SOLVER.IMS_PER_BATCH"]),
])
def test_config_typos(tmp_path, opts, fragments):
    assert_user_error(*run(TRAIN_NET, ["--config-file", CFG, *opts], tmp_path), *fragments)


def test_typo_in_a_config_file_and_a_missing_config_file(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(f"_BASE_: {CFG}\nINCLR:\n  KAPA: 0.3\n")
    assert_user_error(*run(TRAIN_NET, ["--config-file", bad], tmp_path), "INCLR.KAPA", str(bad), "INCLR.KAPPA")
    assert_user_error(*run(TRAIN_NET, ["--config-file", tmp_path / "nope.yml"], tmp_path), "nope.yml", "not found")


# ------------------------------------------------------------------------------ datasets
def test_missing_dataset_folder(tmp_path):
    msg = assert_user_error(*run(TRAIN_NET, ["--config-file", CFG, *RUN, "OUTPUT_DIR", tmp_path / "o"], tmp_path,
                                 datasets=tmp_path / "nowhere"),
                            str(tmp_path / "nowhere"), "Market-1501-v15.09.15", "FASTREID_DATASETS")
    assert "bounding_box_train/" in msg  # the expected layout


def test_mislaid_dataset_folder(tmp_path):
    make_market1501(str(tmp_path / "data"), num_train=2, num_test=2, seed=3)
    base = tmp_path / "data" / "Market-1501-v15.09.15"
    os.rename(base / "bounding_box_train", base / "train")  # not where FastReID looks
    assert_user_error(*run(TRAIN_NET, ["--config-file", CFG, *RUN, "OUTPUT_DIR", tmp_path / "o"], tmp_path,
                           datasets=tmp_path / "data"), str(base / "bounding_box_train"), "Expected layout")


def test_missing_dataset_under_two_processes_is_reported_once(tmp_path):
    rc, out, err = run(TRAIN_NET, ["--num-gpus", "2", "--dist-url", "auto", "--config-file", CFG, *RUN,
                                   "OUTPUT_DIR", tmp_path / "o"], tmp_path, datasets=tmp_path / "nowhere")
    assert_user_error(rc, out, err, "Market-1501-v15.09.15")


def test_empty_target_set(tmp_path):
    make_market1501(str(tmp_path / "data"), num_train=2, num_test=2, seed=4)
    for path in glob.glob(str(tmp_path / "data" / "Market-1501-v15.09.15" / "bounding_box_train" / "*.jpg")):
        os.unlink(path)
    assert_user_error(*run(TRAIN_NET, ["--config-file", CFG, *RUN, "OUTPUT_DIR", tmp_path / "o"], tmp_path,
                           datasets=tmp_path / "data"), "target training set", "is empty", "FASTREID_DATASETS")


def test_unreadable_image_during_feature_extraction(tmp_path):
    make_market1501(str(tmp_path / "data"), num_train=6, num_test=4, seed=2)
    bad = sorted(glob.glob(str(tmp_path / "data" / "Market-1501-v15.09.15" / "bounding_box_train" / "*.jpg")))[5]
    with open(bad, "r+b") as f:
        f.truncate(40)
    assert_user_error(*run(TRAIN_NET, ["--config-file", CFG, *RUN, "OUTPUT_DIR", tmp_path / "o"], tmp_path,
                           datasets=tmp_path / "data"), "Cannot read image", bad, "INCLR.SKIP_BAD_IMAGES")


# ------------------------------------------------------------------------------ weights
def test_missing_weights(market, tmp_path):
    assert_user_error(*run(TRAIN_NET, ["--config-file", CFG, *RUN, "MODEL.WEIGHTS", tmp_path / "nope.pth",
                                       "OUTPUT_DIR", tmp_path / "o"], tmp_path, datasets=market),
                      str(tmp_path / "nope.pth"), "not found")


def test_mismatched_weights(market, tmp_path):
    torch.save({"model": {"backbone.conv1.weight": torch.zeros(2, 3, 3, 3)}}, tmp_path / "other.pth")
    assert_user_error(*run(TRAIN_NET, ["--config-file", CFG, "--eval-only", *RUN, "MODEL.WEIGHTS",
                                       tmp_path / "other.pth", "OUTPUT_DIR", tmp_path / "o"], tmp_path, datasets=market),
                      "other.pth", "does not match the network", "missing: ")


# ------------------------------------------------------------------------------ during training
def test_a_renamed_key_names_its_replacement(market, tmp_path):
    # (More clusters than classifier rows is no error any more: the trainer grows them, test_classifier_rows.)
    assert_user_error(*run(TRAIN_NET, ["--config-file", CFG, *RUN, "INCLR.MAX_CLASSES", "1",
                                       "OUTPUT_DIR", tmp_path / "o"], tmp_path, datasets=market),
                      "INCLR.MAX_CLASSES", "renamed", "INCLR.CLASSIFIER_ROWS")


def test_non_finite_loss(market, tmp_path):
    msg = assert_user_error(*run(TRAIN_NET, ["--config-file", CFG, *RUN, "SOLVER.BASE_LR", "1e30",
                                             "OUTPUT_DIR", tmp_path / "o"], tmp_path, datasets=market),
                            "Loss became NaN or infinite", "SOLVER.BASE_LR")
    assert "iteration" in msg


# ------------------------------------------------------------------------------ export
def test_export_user_errors(tmp_path):
    rc_out_err = run(EXPORT, ["--config-file", CFG, "--weights", tmp_path / "nope.pth", "--output", tmp_path / "x"],
                     tmp_path)
    assert_user_error(*rc_out_err, "nope.pth", "not found")
    torch.save({"model": {"backbone.conv1.weight": torch.zeros(2)}}, tmp_path / "baseline.pth")
    assert_user_error(*run(EXPORT, ["--config-file", CFG, "--weights", tmp_path / "baseline.pth",
                                    "--output", tmp_path / "x"], tmp_path), "not an INCLR checkpoint")
    source = os.path.join(ROOT, "configs", "Pretrain", "duke.yml")
    assert_user_error(*run(EXPORT, ["--config-file", source, "--weights", tmp_path / "baseline.pth",
                                    "--output", tmp_path / "x"], tmp_path), "META_ARCHITECTURE 'Baseline'")


# ------------------------------------------------------------------------------ bugs and INCLR_DEBUG
def test_inclr_debug_shows_the_traceback_of_a_user_error(tmp_path):
    rc, out, err = run(TRAIN_NET, ["--config-file", CFG, "SOLVER.BASE_LRR", "0.1"], tmp_path, debug=True)
    assert rc != 0 and "Traceback" in err and "ConfigError" in err and "SOLVER.BASE_LRR" in err


BUG = r"""
import runpy, sys
sys.path.insert(0, sys.argv[1])
import inclr_fastreid.engine.launcher as launcher
def setup(args):
    return {}["a bug, not a user error"]
launcher.setup = setup
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_bug_still_shows_its_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-c", BUG, ROOT, TRAIN_NET, "--config-file", CFG], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "KeyError: 'a bug, not a user error'" in proc.stderr
    assert "error: " not in proc.stderr.replace("KeyError: ", "")


# ------------------------------------------------------------------------------ one type, one place
def test_every_user_error_is_one_type_and_keeps_its_builtin_base():
    from inclr_fastreid.compat import UnreadableImageError
    from inclr_fastreid.config import ConfigError
    from inclr_fastreid.errors import PeerUserError
    from inclr_fastreid.engine.trainer import NonFiniteLossError
    from inclr_fastreid.errors import (DatasetFormatError, DatasetNotFoundError, EmptyTargetSetError,
                                       TooManyClustersError, UserError)
    from inclr_fastreid.data.synthetic.datasets import SyntheticDatasetError
    from inclr_fastreid.export import ExportError
    from inclr_fastreid.io import CheckpointLoadError, CheckpointMismatchError

    for cls, base in [(ConfigError, ValueError), (DatasetNotFoundError, FileNotFoundError),
                      (DatasetFormatError, ValueError), (EmptyTargetSetError, ValueError),
                      (UnreadableImageError, OSError), (CheckpointLoadError, RuntimeError),
                      (CheckpointMismatchError, ValueError), (TooManyClustersError, RuntimeError),
                      (NonFiniteLossError, FloatingPointError), (PeerUserError, RuntimeError),
                      (ExportError, ValueError), (SyntheticDatasetError, RuntimeError)]:
        assert issubclass(cls, UserError) and issubclass(cls, base), cls


def test_run_guarded_in_process(capsys, monkeypatch):
    from inclr_fastreid.errors import EXIT_USER_ERROR, UserError, run_guarded

    def fail():
        raise UserError("the folder is not there")

    monkeypatch.delenv("INCLR_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stop:
        run_guarded(fail)
    assert stop.value.code == EXIT_USER_ERROR == 2
    assert capsys.readouterr().err == "error: the folder is not there\n"
    assert "INCLR_USER_ERROR_DIR" not in os.environ  # the launch's marker folder is gone again
    with pytest.raises(ZeroDivisionError):  # a bug propagates untouched
        run_guarded(lambda: 1 / 0)
    monkeypatch.setenv("INCLR_DEBUG", "1")
    with pytest.raises(UserError):
        run_guarded(fail)
    assert run_guarded(lambda x: x + 1, 1) == 2
