"""MSMT17's UDA training view, ``MSMT17UDA`` (docs/design.md §9), registered in FastReID's DATASET_REGISTRY.

FastReID's own ``Market1501`` and ``DukeMTMC`` read Market-1501 and DukeMTMC-reID unchanged.
MSMT17 needs ``MSMT17UDA``: the UDA literature adapts on list_train + list_val
(32,621 images, as yxgeee/MMT), while FastReID's ``MSMT17`` gives list_train alone and its
``combineall`` folds query and gallery (test images) into training.
"""
from __future__ import annotations

import os.path as osp
from typing import List, Tuple

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.bases import ImageDataset

from ..errors import DatasetFormatError, DatasetNotFoundError
from ..registry import register_once
from .layouts import missing_dataset_message

_MSMT_VERSIONS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}


@register_once(DATASET_REGISTRY)
class MSMT17UDA(ImageDataset):
    """MSMT17 with train = list_train + list_val (32,621 images), the UDA protocol's target set."""

    dataset_name = "msmt17"

    def __init__(self, root: str = "datasets", **kwargs):
        self.dataset_dir = root
        main = next((v for v in _MSMT_VERSIONS if osp.isdir(osp.join(root, v))), None)
        if main is None:
            raise DatasetNotFoundError(missing_dataset_message("MSMT17UDA", osp.join(root, "MSMT17_V1")))
        train_sub, test_sub = _MSMT_VERSIONS[main]
        base = osp.join(root, main)
        self.train_dir, self.test_dir = osp.join(base, train_sub), osp.join(base, test_sub)
        lists = {k: osp.join(base, f"list_{k}.txt") for k in ("train", "val", "query", "gallery")}
        self.check_before_run([self.train_dir, self.test_dir, *lists.values()])
        train = self._read(self.train_dir, lists["train"], True) + self._read(self.train_dir, lists["val"], True)
        query = self._read(self.test_dir, lists["query"], False)
        gallery = self._read(self.test_dir, lists["gallery"], False)
        super().__init__(train, query, gallery, **kwargs)

    def _read(self, img_dir: str, list_path: str, is_train: bool) -> List[Tuple[str, object, object]]:
        data = []
        with open(list_path) as f:
            for line_no, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rel, pid_s = line.split()
                    pid, camid = int(pid_s), int(rel.split("_")[2]) - 1
                except (ValueError, IndexError):
                    raise DatasetFormatError(f"{list_path}:{line_no}: expected '<pid>/<name>.jpg <pid>' "
                                     f"with the camera as the third '_' field, got {line!r}") from None
                if is_train:
                    data.append((osp.join(img_dir, rel), f"{self.dataset_name}_{pid}",
                                 f"{self.dataset_name}_{camid}"))
                else:
                    data.append((osp.join(img_dir, rel), pid, camid))
        return data
