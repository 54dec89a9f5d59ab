"""Degenerate clusterings and loader swaps in the PseudoLabelHook.

Rules (pseudo_label_hook module docstring): fewer than 2 clusters reuses the last labels, or skips
the epoch's adaptation when there are none; fewer clusters than identities per batch gives smaller
batches; more clusters than classifier rows, with nothing to grow them, stops naming INCLR.CLASSIFIER_ROWS. Unit tests drive the
hook with a fake trainer and crafted clustering payloads; one tiny run finds no cluster at all.
"""
import glob
import json
import os

import numpy as np
import pytest
import torch

from inclr_fastreid.config import setup_cfg
from inclr_fastreid.data.pseudo_dataset import NoPseudoLabelsLoader
from inclr_fastreid.engine.trainer import INCLRTrainer
from inclr_fastreid.errors import TooManyClustersError

from tests.helpers.hook import CFG, ROWS, close, make_hook, payload, true_labels
from tests.helpers.layouts import make_market1501
from tests.helpers.tiny import RELIABILITY_RUN, train_in_process


def test_no_cluster_and_no_earlier_labels_skips_the_epoch(items, fastreid_warnings):
    hook = make_hook(items)
    hook._apply(0, payload([-1] * len(items)))
    assert hook.state.skip_epoch and hook.state.labels is None and hook.trainer.model.calls == []
    assert "skipping this epoch's adaptation" in fastreid_warnings.text and "INCLR.CLUSTER.EPS" in fastreid_warnings.text
    assert hook.state.history[-1]["action"] == "skipped_epoch"
    hook._install_loader(0)
    trainer = hook.trainer
    assert trainer.skip_steps and isinstance(trainer._trainer.data_loader, NoPseudoLabelsLoader)
    assert INCLRTrainer.run_step(trainer) is None  # returns without pulling from the empty loader
    with pytest.raises(RuntimeError, match="no pseudo labels"):
        next(trainer._trainer._data_loader_iter)


def test_one_cluster_after_good_labels_reuses_them(items, fastreid_warnings):
    hook = make_hook(items)
    good = true_labels(items) % 3  # 3 clusters
    hook._apply(0, payload(good))
    hook._apply(1, payload([0] * len(items), epoch=1))  # everything in one cluster
    assert np.array_equal(hook.state.labels.numpy(), good) and hook.state.num_classes == 3
    assert hook.state.cluster_epoch == 0 and not hook.state.skip_epoch
    assert hook.trainer.model.calls == [3]  # classifier rows not rewritten for the degenerate round
    assert [r["action"] for r in hook.state.history] == ["trained", "reused_last_labels"]
    assert "reusing the labels of epoch 0" in fastreid_warnings.text
    hook._install_loader(1)
    batch = next(hook.trainer._trainer._data_loader_iter)
    assert torch.equal(batch["targets"], torch.as_tensor(good)[batch["index"]])
    close(hook)


def test_more_clusters_than_classifier_rows_without_growth_names_the_rows_key(items):
    hook = make_hook(items)
    labels = np.arange(len(items)) % (ROWS + 2)
    with pytest.raises(ValueError) as err:
        hook._apply(0, payload(labels))
    assert "INCLR.CLASSIFIER_ROWS" in str(err.value) and f"{ROWS + 2} clusters" in str(err.value)
    assert isinstance(err.value, TooManyClustersError)  # a user error: train_net prints one line, exits 2
    assert hook.state.labels is None


def test_fewer_clusters_than_identities_per_batch_gives_smaller_batches(items, fastreid_warnings):
    hook = make_hook(items)  # 8 images = 4 ids x 2 wanted, only 2 clusters
    labels = np.full(len(items), -1)
    labels[:5], labels[5:9] = 0, 1  # the rest are outliers
    hook._apply(0, payload(labels))
    hook._install_loader(0)
    assert "only 2 pseudo identities; batches hold 2 x 2 images instead of 8" in fastreid_warnings.text
    for _ in range(4):
        batch = next(hook.trainer._trainer._data_loader_iter)
        targets = batch["targets"].tolist()
        assert len(targets) == 4 and sorted(targets) == [0, 0, 1, 1]
        assert (labels[batch["index"].numpy()] == batch["targets"].numpy()).all()  # no outlier drawn
    close(hook)


@pytest.mark.parametrize("workers", [0, 1])
def test_no_stale_batch_after_a_loader_swap(items, workers):
    hook = make_hook(items, workers=workers)
    a = true_labels(items)
    b = (a + 1) % 6  # every image changes label
    hook._apply(0, payload(a))
    hook._install_loader(0)
    first = next(hook.trainer._trainer._data_loader_iter)
    assert torch.equal(first["targets"], torch.as_tensor(a)[first["index"]])
    old = hook.trainer._trainer.data_loader
    hook._apply(1, payload(b, epoch=1))
    hook._install_loader(1)
    assert not old.iter.is_alive(), "the old loader's prefetch thread still runs"
    if workers:
        workers_ = old.iter.generator._workers
        assert len(workers_) == 1 and not workers_[0].is_alive(), "the old loader's worker still runs"
    for _ in range(6):
        batch = next(hook.trainer._trainer._data_loader_iter)
        assert torch.equal(batch["targets"], torch.as_tensor(b)[batch["index"]])
    close(hook)


@pytest.fixture(scope="module")
def skipped_run(tmp_path_factory):
    """A 2-epoch run whose clusterings find nothing (every epoch skipped), and the state its model
    had before training (INCLRTrainer seeds from INCLR.SEED before building it)."""
    root = tmp_path_factory.mktemp("skipped")
    data = root / "data"
    make_market1501(str(data), num_train=6, num_test=4, seed=2)
    bad = sorted(glob.glob(str(data / "Market-1501-v15.09.15" / "bounding_box_train" / "*.jpg")))[3]
    with open(bad, "wb") as f:
        f.write(b"not a jpeg")
    # min_samples above the number of images: DBSCAN finds no core point, so no cluster at all
    opts = ["INCLR.CLUSTER.MIN_SAMPLES", "100", "SOLVER.MAX_EPOCH", "2", "INCLR.SKIP_BAD_IMAGES", "True"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTREID_DATASETS", str(data))
        trainer = INCLRTrainer(setup_cfg(CFG, RELIABILITY_RUN + opts + ["OUTPUT_DIR", str(root / "initial")]))
        initial = {k: v.clone() for k, v in trainer.unwrapped_model.state_dict().items()}
        del trainer
    out = root / "out"
    results = train_in_process(out, data, *opts)
    return out, bad, initial, results


def test_run_where_clustering_finds_nothing_finishes_with_a_warning(skipped_run):
    out, bad, _, results = skipped_run
    assert 0.0 <= results["mAP"] <= 100.0 and (out / "final_results.json").is_file()
    rounds = [json.loads(line) for line in (out / "pseudo_labels.jsonl").read_text().splitlines()]
    assert [r["action"] for r in rounds] == ["skipped_epoch", "skipped_epoch"]
    assert all(r["num_clusters"] == 0 and r["num_samples"] == 35 for r in rounds)
    log = (out / "log.txt").read_text()
    assert log.count("skipping this epoch's adaptation") == 2
    assert "left out 1 unreadable target image" in log and os.path.basename(bad) in log


def _same(a, b):
    return a.shape == b.shape and torch.equal(a.nan_to_num(), b.nan_to_num()) and torch.equal(a.isnan(), b.isnan())


def test_a_skipped_epoch_leaves_the_model_unchanged(skipped_run):
    """Skipped epochs take no optimiser step: students, buffers (classifier rows, IGMO centroids,
    credibility, BN statistics) are bit-identical to the model before training, the optimiser holds
    no state, and the teachers are within rounding of their (equal) students' EMA."""
    from inclr_fastreid.io import safe_torch_load

    out, _, initial, _ = skipped_run
    ckpt = safe_torch_load(str(out / "model_final.pth"))
    final = ckpt["model"]
    assert final.keys() == initial.keys()
    for key, before in initial.items():
        if key.startswith("teacher") and before.is_floating_point():
            assert torch.allclose(final[key], before, rtol=0, atol=1e-6), key
        elif key == "current_epoch":  # the epoch counter still advances (docs/design.md §4.4)
            assert int(final[key]) == 1, key
        else:
            assert _same(final[key], before), key
    assert int(final["num_live_classes"]) == 0 and torch.isnan(final["credibility"]).all()
    assert ckpt["optimizer"]["state"] == {}  # no Adam moments: no step was taken


def test_a_skipped_epoch_leaves_the_teachers_bit_identical(skipped_run):
    from inclr_fastreid.io import safe_torch_load

    out, _, initial, _ = skipped_run
    final = safe_torch_load(str(out / "model_final.pth"))["model"]
    changed = [k for k, v in initial.items() if k.startswith("teacher") and not _same(final[k], v)]
    assert changed == []
