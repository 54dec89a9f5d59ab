"""Reliability of adaptation runs: kill-and-resume replays the run exactly, saves are
atomic, and bad input stops with a message that names what is wrong.

The runs are tiny (ResNet-18, 64x32, 36 target images, 3 epochs x 2 iterations) and start from
randomly initialised students (INCLR.SEED fixes them), so no pretraining step is needed. Runs that
need not be killed train inside the test process: the ~20 s of imports and numba compilation are
paid once.
"""
import glob
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from inclr_fastreid.compat import UnreadableImageError
from inclr_fastreid.errors import DatasetNotFoundError, UserError
from inclr_fastreid.io import CheckpointLoadError, safe_torch_load

from tests.helpers.layouts import make_market1501

from inclr_fastreid.modeling.pseudo_classes import rows_for_clusters

from tests.helpers.tiny import ADAPT_CFG as CFG
from tests.helpers.tiny import RELIABILITY_RUN as RUN
from tests.helpers.tiny import ROOT, SMALL_NET, TINY, TRAIN_NET, train_in_process

# One intra-op thread in every run (in this process and in subprocesses): the same arithmetic in
# all runs that are compared, and no spinning thread pools on a shared 2-core machine.
THREADS = 1
TIMING_KEYS = ("extract_seconds", "cluster_seconds")

# Runs train_net.py, but the save of the last epoch's checkpoint (model_final) writes half of its bytes
# and stalls, so the test can SIGKILL the process in the middle of a checkpoint write.
STALL_IN_SAVE = r"""
import io, os, runpy, sys, time
import torch
_save = torch.save
def save(obj, f, *a, **k):
    if isinstance(obj, dict) and obj.get("epoch") == 2 and hasattr(f, "write"):
        buf = io.BytesIO()
        _save(obj, buf, *a, **k)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        open(os.environ["STALL_MARK"], "w").close()
        time.sleep(600)
    return _save(obj, f, *a, **k)
torch.save = save
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class _LogRecorder(logging.Handler):
    """Messages of the 'fastreid' loggers while attached (they do not propagate to the root)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def records(out):
    rows = [json.loads(line) for line in open(os.path.join(out, "pseudo_labels.jsonl"))]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel_data")
    make_market1501(str(root), num_train=6, num_test=4, seed=2)
    return root


# ------------------------------------------------------------------------------ kill and resume
def test_sigkill_mid_save_then_resume_replays_the_run(data, tmp_path):
    """Killed while writing model_final, with INCLR.KEEP_CHECKPOINTS 1: model_0000 was deleted when
    model_0001 was written, and the resume from model_0001 (whose classifiers had grown with the
    clusters) ends bit-identical to the run that was never killed."""
    out = tmp_path / "killed"
    mark = tmp_path / "stalled"
    keep = ["INCLR.KEEP_CHECKPOINTS", "1"]
    env = dict(os.environ, FASTREID_DATASETS=str(data), STALL_MARK=str(mark), PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS=str(THREADS))
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", STALL_IN_SAVE, TRAIN_NET, "--config-file", CFG, *RUN, *keep,
                                 "OUTPUT_DIR", str(out)], cwd=tmp_path, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            uninterrupted = tmp_path / "uninterrupted"
            train_in_process(uninterrupted, data, *keep)  # the reference run, meanwhile
            deadline = time.monotonic() + 300
            while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert mark.exists(), "the run never reached its last checkpoint:\n" + (tmp_path / "killed.log").read_text()[-3000:]
            # Killed while half of model_final.pth is on disk: last_checkpoint still names epoch 1.
            assert (out / "last_checkpoint").read_text().strip() == "model_0001.pth"
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    partial = glob.glob(str(out / ".tmp-*.pth"))
    assert len(partial) == 1 and not (out / "model_final.pth").exists()
    with pytest.raises(CheckpointLoadError):  # the half-written temporary really is unusable
        safe_torch_load(partial[0])
    # Bounded disk: one round checkpoint kept, in the killed run as in the finished one.
    assert not (out / "model_0000.pth").exists() and (out / "model_0001.pth").exists()
    assert sorted(p.name for p in uninterrupted.glob("model_*.pth")) == ["model_0001.pth", "model_final.pth"]

    # Everything a resume needs is in the epoch-1 checkpoint, loadable without arbitrary unpickling.
    ckpt = safe_torch_load(str(out / "model_0001.pth"))
    assert ckpt["epoch"] == 1 and {"optimizer", "lr_sched", "pseudo_labels"} <= set(ckpt)
    model = ckpt["model"]
    state = ckpt["pseudo_labels"]
    k = state["num_classes"]
    max_k = max(r["num_clusters"] for r in json.loads(state["history"]))
    # The classifiers follow the clusters (grown from one row at the first round), not the 36 images.
    rows = model["student1.heads.weight"].shape[0]
    assert max_k <= rows <= rows_for_clusters(max_k) < 36
    for net in ("student1", "student2", "teacher1", "teacher2"):
        assert model[f"{net}.heads.weight"].shape[0] == rows
        assert all(model[f"{net}.heads.part_weights.{p}"].shape[0] == rows for p in range(3))
    assert model["igmo_centroids"].shape[0] == rows
    assert k >= 2 and state["seed"] == 7 and state["cluster_epoch"] == 1
    assert state["labels"].shape == (36,) and state["agreement"].shape == (36, 3)
    assert int(model["num_live_classes"]) == k and model["igmo_centroids"][:k].norm(dim=1).allclose(torch.ones(k))
    assert torch.isfinite(model["credibility"]).sum() > 0  # IGMO credibility of the images seen
    assert ckpt["optimizer"]["state"], "optimizer moments missing"

    epoch1_bytes = (out / "model_0001.pth").read_bytes()
    seen = _LogRecorder()
    fr_logger = logging.getLogger("fastreid")
    fr_logger.addHandler(seen)
    try:
        train_in_process(out, data, *keep, resume=True)
    finally:
        fr_logger.removeHandler(seen)
    assert not glob.glob(str(out / ".tmp-*")), "the interrupted save's temporary was not cleaned up"
    # The resumed process started at the saved epoch: it never ran epochs 0 and 1 again.
    assert "Starting training from epoch 2" in seen.messages
    assert sorted(int(m.split()[3].rstrip(":")) for m in seen.messages if m.startswith("Pseudo labels, epoch ")) == [2]
    assert (out / "model_0001.pth").read_bytes() == epoch1_bytes

    # Same labels, same records, same final network and metrics as the run that was never killed.
    assert records(out) == records(uninterrupted)
    a = safe_torch_load(str(uninterrupted / "model_final.pth"))
    b = safe_torch_load(str(out / "model_final.pth"))
    assert torch.equal(a["pseudo_labels"]["labels"], b["pseudo_labels"]["labels"])
    assert a["model"].keys() == b["model"].keys()
    for key, va in a["model"].items():
        vb = b["model"][key]
        diff = (va.float() - vb.float()).nan_to_num().abs().max().item() if va.numel() else 0.0
        # Bit-identical (NaN where NaN: credibility of images not seen), not merely close.
        assert torch.equal(va.isnan(), vb.isnan()) and torch.equal(va.nan_to_num(), vb.nan_to_num()), f"{key}: {diff:.3g}"
    ra = json.loads((uninterrupted / "final_results.json").read_text())
    rb = json.loads((out / "final_results.json").read_text())
    assert ra.keys() == rb.keys()
    for key, va in ra.items():
        if isinstance(va, float):
            assert math.isclose(va, rb[key], abs_tol=1e-4), key


# ------------------------------------------------------------------------------ NaN loss
def test_nan_loss_stops_naming_iteration_and_terms_and_keeps_last_checkpoint(data, tmp_path, monkeypatch):
    from inclr_fastreid.engine.trainer import NonFiniteLossError
    from inclr_fastreid.modeling.meta_arch.inclr import INCLR

    forward, calls = INCLR.forward, []

    def poisoned(self, batched_inputs):
        out = forward(self, batched_inputs)
        if self.training:
            calls.append(1)
            if len(calls) == 3:  # the first step of epoch 1 (iteration 2)
                out["loss_kl"] = out["loss_kl"] * float("nan")
        return out

    monkeypatch.setattr(INCLR, "forward", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(FloatingPointError) as err:
        train_in_process(out, data, "SOLVER.MAX_EPOCH", "2")
    msg = str(err.value)
    assert isinstance(err.value, NonFiniteLossError) and isinstance(err.value, UserError)
    assert "iteration 2" in msg and "Epoch 1" in msg and "loss_kl=nan" in msg and "loss_ce=" in msg
    assert "model_0000.pth" in msg and "--resume" in msg
    assert (out / "last_checkpoint").read_text().strip() == "model_0000.pth"
    kept = safe_torch_load(str(out / "model_0000.pth"))
    assert all(torch.isfinite(v).all() for k, v in kept["model"].items() if k != "credibility")


# ------------------------------------------------------------------------------ bad input
def test_missing_dataset_folder_names_path_and_layout(tmp_path, monkeypatch):
    from inclr_fastreid.config import setup_cfg
    from inclr_fastreid.data.target import build_target_train_items

    monkeypatch.setenv("FASTREID_DATASETS", str(tmp_path / "nowhere"))
    cfg = setup_cfg(CFG, TINY)
    with pytest.raises(DatasetNotFoundError) as err:  # a FileNotFoundError too
        build_target_train_items(cfg)
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "Market-1501-v15.09.15" in msg
    assert "bounding_box_train" in msg and "FASTREID_DATASETS" in msg


def _truncate(path):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:40])


def within(seconds, fn):
    """fn() in a daemon thread; fail (rather than hang the suite) if it has not returned in time."""
    import threading

    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s: a loader waits forever"
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.mark.parametrize("workers", [0, 1])
def test_an_error_in_the_prefetch_thread_is_raised_not_a_hang(workers):
    """FastReID's DataLoaderX thread used to die silently, leaving the training loop blocked forever."""
    from fastreid.data.data_utils import DataLoaderX

    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 12

        def __getitem__(self, i):
            if i == 7:
                raise OSError("cannot decode image 7")
            return {"x": torch.tensor([i])}

    loader = DataLoaderX(0, dataset=Broken(), batch_size=2, num_workers=workers)
    seen = []

    def consume():
        for batch in loader:
            seen.append(batch["x"].flatten().tolist())

    with pytest.raises(OSError, match="cannot decode image 7"):
        within(60, consume)
    assert seen[:2] == [[0, 1], [2, 3]] and max(max(b) for b in seen) < 6  # raised at batch [6, 7]
    with pytest.raises(OSError, match="cannot decode image 7"):  # asking again raises again
        within(10, lambda: next(loader.iter))
    within(10, loader.shutdown)
    assert not loader.iter.is_alive()


def test_unreadable_image_is_named_or_skipped_with_a_count(tmp_path, monkeypatch, caplog):
    from fastreid.data.build import fast_batch_collator
    from fastreid.data.common import CommDataset
    from fastreid.data.data_utils import DataLoaderX
    from fastreid.data.transforms import build_transforms

    from inclr_fastreid.config import setup_cfg
    from inclr_fastreid.data.target import build_target_train_items

    make_market1501(str(tmp_path), num_train=2, num_test=1, seed=3)
    train = sorted(glob.glob(str(tmp_path / "Market-1501-v15.09.15" / "bounding_box_train" / "*.jpg")))
    _truncate(train[0])
    monkeypatch.setenv("FASTREID_DATASETS", str(tmp_path))
    cfg = setup_cfg(CFG, TINY)
    items = build_target_train_items(cfg)
    assert len(items) == len(train)
    ds = CommDataset([(it.path, 0, 0) for it in items], build_transforms(cfg, is_train=False), relabel=False)
    loader = DataLoaderX(0, dataset=ds, batch_size=4, num_workers=0, collate_fn=fast_batch_collator)
    with pytest.raises(UnreadableImageError) as err:  # as feature extraction reads the target set
        within(60, lambda: [b for b in loader])
    loader.shutdown()
    assert train[0] in str(err.value) and "INCLR.SKIP_BAD_IMAGES" in str(err.value)

    cfg = setup_cfg(CFG, TINY + ["INCLR.SKIP_BAD_IMAGES", "True"])
    with caplog.at_level(logging.WARNING, logger="fastreid"):
        kept = build_target_train_items(cfg)
    assert [it.path for it in kept] == [it.path for it in items if it.path != train[0]]
    assert "left out 1 unreadable target image" in caplog.text and os.path.basename(train[0]) in caplog.text


def test_target_set_empty_after_filtering_is_a_clear_error(tmp_path, monkeypatch):
    from inclr_fastreid.config import setup_cfg
    from inclr_fastreid.data.target import build_target_train_items

    make_market1501(str(tmp_path), num_train=1, num_test=1, cams=2, per_cam=1, seed=4)
    for path in glob.glob(str(tmp_path / "Market-1501-v15.09.15" / "bounding_box_train" / "*.jpg")):
        _truncate(path)
    monkeypatch.setenv("FASTREID_DATASETS", str(tmp_path))
    with pytest.raises(ValueError) as err:
        build_target_train_items(setup_cfg(CFG, TINY + ["INCLR.SKIP_BAD_IMAGES", "True"]))
    assert "All 2 target training images" in str(err.value) and "Market1501" in str(err.value)
    assert "unreadable" in str(err.value)


def _cfg(config, *opts):
    from inclr_fastreid.config import setup_cfg

    cfg = setup_cfg(config, TINY + SMALL_NET + list(opts), freeze=False)
    cfg.OUTPUT_DIR = ""
    return cfg


def _save(model, path):
    torch.save({"model": model.state_dict()}, path)
    return str(path)


def test_weights_of_another_architecture_list_the_mismatched_keys(tmp_path):
    from fastreid.modeling import build_model

    from inclr_fastreid.engine.trainer import INCLRTrainer

    torch.manual_seed(0)
    pretrain = os.path.join(ROOT, "configs", "Pretrain", "duke.yml")
    inclr_cfg = _cfg(CFG, "MODEL.HEADS.NUM_CLASSES", "6", "INCLR.NUM_SAMPLES", "12")

    # Adaptation from a source model with FastReID's EmbeddingHead instead of PartPoolHead.
    embedding = _save(build_model(_cfg(pretrain, "MODEL.HEADS.NAME", "EmbeddingHead", "MODEL.HEADS.NUM_CLASSES", "4")),
                      tmp_path / "embedding_head.pth")
    inclr = build_model(inclr_cfg)
    with pytest.raises(ValueError) as err:
        inclr.load_pretrained(embedding)
    assert "missing: heads.part_bottlenecks.0" in str(err.value) and "PartPoolHead" in str(err.value)

    # Adaptation of a ResNet-18 INCLR from a ResNet-34 source model.
    resnet = ["MODEL.BACKBONE.NAME", "build_resnet_backbone", "MODEL.BACKBONE.FEAT_DIM", "512"]
    r34 = _save(build_model(_cfg(pretrain, *resnet, "MODEL.BACKBONE.DEPTH", "34x", "MODEL.HEADS.NUM_CLASSES", "4")),
                tmp_path / "r34.pth")
    with pytest.raises(ValueError) as err:
        build_model(_cfg(CFG, *resnet, "MODEL.BACKBONE.DEPTH", "18x", "MODEL.HEADS.NUM_CLASSES", "6")).load_pretrained(r34)
    assert "unexpected: backbone.layer1.2." in str(err.value)

    # --eval-only of a wider OSNet INCLR checkpoint with an x0.25 config: FastReID would only log it.
    wide = _save(build_model(_cfg(CFG, "MODEL.BACKBONE.DEPTH", "x0_5", "MODEL.HEADS.NUM_CLASSES", "6")),
                 tmp_path / "inclr_x0_5.pth")
    inclr_cfg.MODEL.WEIGHTS = wide
    with pytest.raises(CheckpointLoadError) as err:
        INCLRTrainer.build_model_for_eval(inclr_cfg)
    msg = str(err.value)
    assert wide in msg and "wrong shape: " in msg
    assert "student1.backbone.conv1.conv.weight: checkpoint (32, 3, 7, 7) vs network (16, 3, 7, 7)" in msg
    assert "MODEL.BACKBONE.DEPTH" in msg

    # The same architecture loads, with classifier rows / pseudo-label buffers of other sizes.
    src = build_model(_cfg(CFG, "MODEL.HEADS.NUM_CLASSES", "9", "INCLR.NUM_SAMPLES", "20"))
    inclr_cfg.MODEL.WEIGHTS = _save(src, tmp_path / "inclr.pth")
    model = INCLRTrainer.build_model_for_eval(inclr_cfg)
    assert torch.equal(model.teacher2.backbone.conv1.conv.weight, src.teacher2.backbone.conv1.conv.weight)
    # A source (Baseline + PartPoolHead) model evaluated as INCLR: teacher 1 is that network.
    base = build_model(_cfg(pretrain, "MODEL.HEADS.NUM_CLASSES", "4"))
    inclr_cfg.MODEL.WEIGHTS = _save(base, tmp_path / "source.pth")
    model = INCLRTrainer.build_model_for_eval(inclr_cfg)
    assert torch.equal(model.teacher1.backbone.conv1.conv.weight, base.backbone.conv1.conv.weight)


def test_checkpoint_needing_arbitrary_unpickling_is_refused_on_resume(tmp_path):
    import pickle

    from fastreid.utils.checkpoint import Checkpointer

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "model_0000.pth", "wb") as f:
        pickle.dump({"model": {}, "epoch": Evil()}, f)
    (tmp_path / "last_checkpoint").write_text("model_0000.pth")
    ckpt = Checkpointer(torch.nn.Linear(2, 2), str(tmp_path))
    with pytest.raises(CheckpointLoadError, match="arbitrary unpickling"):
        ckpt.resume_or_load("", resume=True)


def test_resume_keeps_the_better_model_best(tmp_path):
    """FastReID's PeriodicCheckpointer forgets its best metric on resume; restore_best_metric reads it
    back from model_best.pth so a worse evaluation after the resume cannot overwrite that file."""
    from fastreid.engine import hooks

    from inclr_fastreid.engine.checkpoint import restore_best_metric

    saved = []

    class Recorder:
        def save(self, name, **state):
            saved.append((name, state["metric"]))

    torch.save({"model": {}, "metric": 0.7, "epoch": 3}, tmp_path / "model_best.pth")
    hook = hooks.PeriodicCheckpointer(Recorder(), period=1, max_epoch=10)
    assert restore_best_metric([hook], str(tmp_path)) == pytest.approx(0.7)
    hook.step(4, metric=0.5)
    assert saved == [("model_0004", 0.5)]  # no model_best for a worse metric
    hook.step(5, metric=0.8)
    assert saved[1:] == [("model_best", 0.8), ("model_0005", 0.8)]

    fresh = hooks.PeriodicCheckpointer(Recorder(), period=1, max_epoch=10)
    assert restore_best_metric([fresh], str(tmp_path / "elsewhere")) == -1 and fresh.best_metric == -1
