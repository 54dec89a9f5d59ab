"""MSMT17UDA (docs/design.md §9) on a tiny folder in MSMT17's real layout (tests.helpers.layouts.make_msmt17):
the adaptation target set is list_train + list_val and nothing of the test split; query/gallery are
list_query/list_gallery; camera ids come from the file names."""
import os

import pytest

from inclr_fastreid.config import setup_cfg
from inclr_fastreid.data.msmt17_uda import MSMT17UDA
from inclr_fastreid.data.target import build_target_train_items

from tests.helpers.layouts import make_msmt17

from tests.helpers.tiny import ROOT


def _list(root, split):
    """(relative path, pid) of one list file, read here without the dataset class."""
    with open(os.path.join(root, "MSMT17_V1", f"list_{split}.txt")) as f:
        return [(rel, int(pid)) for rel, pid in (line.split() for line in f if line.strip())]


def _cam(rel):  # <pid>/<pid>_<n>_<cam>_<date>_<n>_0.jpg, cameras from 1
    return int(os.path.basename(rel).split("_")[2]) - 1


@pytest.fixture(scope="module")
def msmt(tmp_path_factory):
    root = tmp_path_factory.mktemp("msmt")
    counts = make_msmt17(str(root), num_train=6, num_val=3, num_test=4, per_cam=2, cams=3, seed=4)
    return str(root), counts


def test_train_is_list_train_plus_list_val_and_test_is_query_gallery(msmt):
    root, counts = msmt
    assert counts == {"train": 36, "val": 18, "query": 4, "gallery": 20}
    ds = MSMT17UDA(root=root)
    train_dir = os.path.join(root, "MSMT17_V1", "train")
    test_dir = os.path.join(root, "MSMT17_V1", "test")
    want = [(os.path.join(train_dir, rel), f"msmt17_{pid}", f"msmt17_{_cam(rel)}")
            for rel, pid in _list(root, "train") + _list(root, "val")]
    assert sorted(tuple(x[:3]) for x in ds.train) == sorted(want)
    assert not any(x[0].startswith(test_dir) for x in ds.train)  # no test image in training
    assert len({x[1] for x in ds.train}) == 9  # 6 list_train + 3 list_val identities
    for split, got in (("query", ds.query), ("gallery", ds.gallery)):
        want = [(os.path.join(test_dir, rel), pid, _cam(rel)) for rel, pid in _list(root, split)]
        assert sorted(tuple(x[:3]) for x in got) == sorted(want)

    # FastReID's own MSMT17 leaves list_val out of training (and combineall adds query + gallery).
    from fastreid.data.datasets import DATASET_REGISTRY

    assert len(DATASET_REGISTRY.get("MSMT17")(root=root).train) == counts["train"]


def test_adaptation_target_set_of_the_msmt_configs(msmt, monkeypatch):
    root, counts = msmt
    monkeypatch.setenv("FASTREID_DATASETS", root)
    for task in ("duke2msmt", "market2msmt"):
        items = build_target_train_items(setup_cfg(os.path.join(ROOT, "configs", "INCLR", f"{task}.yml"), []))
        rows = _list(root, "train") + _list(root, "val")
        assert len(items) == counts["train"] + counts["val"]
        assert sorted((it.path, it.camid) for it in items) == sorted(
            (os.path.join(root, "MSMT17_V1", "train", rel), _cam(rel)) for rel, _ in rows)
        assert len({it.true_pid for it in items}) == 9


def test_msmt_test_loader_has_the_query_count(msmt, monkeypatch):
    import fastreid.data.build as fr_build

    from inclr_fastreid.engine.trainer import INCLRTrainer

    root, counts = msmt
    monkeypatch.setattr(fr_build, "_root", root)  # FastReID reads FASTREID_DATASETS once, at import
    cfg = setup_cfg(os.path.join(ROOT, "configs", "INCLR", "duke2msmt.yml"),
                    ["DATALOADER.NUM_WORKERS", "0", "TEST.IMS_PER_BATCH", "8", "INPUT.SIZE_TEST", "[64,32]"])
    loader, num_query = INCLRTrainer.build_test_loader(cfg, "MSMT17UDA")
    assert num_query == counts["query"]
    seen = 0
    for batch in loader:
        seen += len(batch["targets"])
    loader.shutdown()
    assert seen == counts["query"] + counts["gallery"]
