"""Rendered target images for measuring a round's cost on real pixels (data/synthetic/datasets.py)."""
import math
from typing import List

from ..data.synthetic.datasets import DOMAINS, SynthB, build_plan, resolve_params
from ..data.target import TargetItem


def rendered_items(n: int, root: str, seed: int) -> List[TargetItem]:
    """``n`` target items of a SynthB rendering sized for them (cached under ``root``), in file order:
    ~18 images per identity over 6 cameras at 128x64, like Market-1501's own images."""

    def train_size(ids: int) -> int:  # the rendering plan alone, nothing drawn
        params = resolve_params(seed, num_train_ids=ids, num_test_ids=1, num_distractor_ids=0)
        return len(build_plan(DOMAINS["SynthB"], params)["bounding_box_train"])

    ids = max(2, math.ceil(n / 18))  # 12-24 images per identity (mean 18)
    while train_size(ids) < n:
        ids += 1
    data = SynthB(root=root, seed=seed, num_train_ids=ids, num_test_ids=1, num_distractor_ids=0, verbose=False)
    train = data.train
    if len(train) < n:
        raise RuntimeError(f"rendered {len(train)} training images, fewer than the {n} asked for")
    return [TargetItem(path, str(pid), int(str(cam).split("_")[-1])) for path, pid, cam in train[:n]]
