"""The on-disk layouts of the real datasets, named in the error when one is not where FastReID looks
(``compat/data.py`` patches FastReID's ``check_before_run`` to raise it; docs/design.md §9).

FastReID's own ``Market1501`` and ``DukeMTMC`` read Market-1501 and DukeMTMC-reID unchanged; MSMT17
is read by FastReID's ``MSMT17`` or by this add-on's ``MSMT17UDA`` (``msmt17_uda.py``), same files.
"""
from __future__ import annotations

import os
import os.path as osp

__all__ = ["DATASET_LAYOUTS", "missing_dataset_message"]

DATASET_LAYOUTS = {
    "Market1501": (
        "<FASTREID_DATASETS>/Market-1501-v15.09.15/\n"
        "    bounding_box_train/0002_c1s1_000451_03.jpg ...\n"
        "    query/0001_c1s1_001051_00.jpg ...\n"
        "    bounding_box_test/0001_c1s1_000151_01.jpg ..."
    ),
    "DukeMTMC": (
        "<FASTREID_DATASETS>/DukeMTMC-reID/\n"
        "    bounding_box_train/0001_c2_f0046182.jpg ...\n"
        "    query/0005_c2_f0046985.jpg ...\n"
        "    bounding_box_test/0002_c1_f0044158.jpg ..."
    ),
    "MSMT17": (
        "<FASTREID_DATASETS>/MSMT17_V1/   (or MSMT17_V2/ with mask_train_v2/, mask_test_v2/)\n"
        "    train/0000/0000_000_01_0303morning_0015_0.jpg ...\n"
        "    test/0000/0000_000_01_0303morning_0008_0.jpg ...\n"
        "    list_train.txt  list_val.txt  list_query.txt  list_gallery.txt"
    ),
}
DATASET_LAYOUTS["MSMT17UDA"] = DATASET_LAYOUTS["MSMT17"]


def missing_dataset_message(dataset: str, path: str) -> str:
    """What is missing, where FastReID looked, and the layout it expects."""
    layout = DATASET_LAYOUTS.get(dataset)
    root = os.getenv("FASTREID_DATASETS", "datasets")
    msg = (f"{dataset}: {path!r} not found (FASTREID_DATASETS={root!r}, "
           f"resolved {osp.abspath(root)!r}).")
    if layout:
        msg += f" Expected layout:\n{layout}"
    return msg + "\nSet FASTREID_DATASETS to the folder holding the dataset, or fix DATASETS.NAMES."
