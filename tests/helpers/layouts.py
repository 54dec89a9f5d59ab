"""Tiny folders in the real on-disk layouts of Market-1501, DukeMTMC-reID and MSMT17 (for tests)."""
from __future__ import annotations

import os
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image


def _write_image(path: str, pid: int, cam: int, rng: np.random.Generator, size=(32, 16)) -> None:
    """An image whose colour encodes the identity (so a model can learn it) plus camera noise."""
    base = np.array([(pid * 53) % 256, (pid * 97) % 256, (pid * 151) % 256], dtype=np.float32)
    img = np.empty((*size, 3), dtype=np.float32)
    img[: size[0] // 2] = base
    img[size[0] // 2:] = base[::-1]
    img += rng.normal(0, 12, img.shape) + cam * 5
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)


def make_market_like(root: str, folder: str, num_train: int = 6, num_test: int = 4, per_cam: int = 2,
                     cams: int = 3, pid_offset: int = 1, seed: int = 0) -> Dict[str, int]:
    """``root/folder/{bounding_box_train,query,bounding_box_test}/0001_c1s1_000123_00.jpg``."""
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "query": 0, "gallery": 0}
    base = os.path.join(root, folder)
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    frame = 0
    for pid in range(pid_offset, pid_offset + num_train):
        for cam in range(1, cams + 1):
            for _ in range(per_cam):
                frame += 1
                _write_image(os.path.join(base, "bounding_box_train", f"{pid:04d}_c{cam}s1_{frame:06d}_00.jpg"),
                             pid, cam, rng)
                counts["train"] += 1
    for pid in range(pid_offset + num_train, pid_offset + num_train + num_test):
        for cam in range(1, cams + 1):
            frame += 1
            sub = "query" if cam == 1 else "bounding_box_test"
            _write_image(os.path.join(base, sub, f"{pid:04d}_c{cam}s1_{frame:06d}_00.jpg"), pid, cam, rng)
            counts["query" if cam == 1 else "gallery"] += 1
            if cam != 1:
                frame += 1
                _write_image(os.path.join(base, sub, f"{pid:04d}_c{cam}s1_{frame:06d}_00.jpg"), pid, cam, rng)
                counts["gallery"] += 1
    return counts


def make_market1501(root: str, **kw) -> Dict[str, int]:
    return make_market_like(root, "Market-1501-v15.09.15", **kw)


def make_dukemtmc(root: str, **kw) -> Dict[str, int]:
    return make_market_like(root, "DukeMTMC-reID", pid_offset=kw.pop("pid_offset", 101), **kw)


def make_msmt17(root: str, num_train: int = 6, num_val: int = 3, num_test: int = 4, per_cam: int = 2,
                cams: int = 3, seed: int = 0) -> Dict[str, int]:
    """``root/MSMT17_V1/{train,test}/<pid>/<name>.jpg`` with list_{train,val,query,gallery}.txt."""
    rng = np.random.default_rng(seed)
    base = os.path.join(root, "MSMT17_V1")
    lists: Dict[str, List[Tuple[str, int]]] = {"train": [], "val": [], "query": [], "gallery": []}
    n = 0
    for split, pids, sub in (("train", range(num_train), "train"),
                             ("val", range(num_train, num_train + num_val), "train"),
                             ("test", range(num_test), "test")):
        for pid in pids:
            d = os.path.join(base, sub, f"{pid:04d}")
            os.makedirs(d, exist_ok=True)
            for cam in range(1, cams + 1):
                for k in range(per_cam if split != "test" else 2):
                    n += 1
                    name = f"{pid:04d}_{n:03d}_{cam:02d}_0303morning_{n:04d}_0.jpg"
                    _write_image(os.path.join(d, name), pid + (500 if sub == "test" else 0), cam, rng)
                    rel = f"{pid:04d}/{name}"
                    if split == "test":
                        lists["query" if (cam == 1 and k == 0) else "gallery"].append((rel, pid))
                    else:
                        lists[split].append((rel, pid))
    for key, items in lists.items():
        with open(os.path.join(base, f"list_{key}.txt"), "w") as f:
            f.writelines(f"{rel} {pid}\n" for rel, pid in items)
    return {k: len(v) for k, v in lists.items()}
