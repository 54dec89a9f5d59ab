"""Training data of an adaptation epoch: pseudo-labelled target images, two augmented views each,
and a P×K batch sampler over pseudo identities (MMT's 16 ids × 4 images by default) that takes an
identity's positives from other cameras where it can (MMT's ``RandomMultipleGallerySampler``)."""
from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from fastreid.data import data_utils

from ..errors import ConfigError


class PseudoLabelDataset(Dataset):
    """Target images with their pseudo label, dataset index, cross-agreement row and two views.

    Only samples with a label ≥ 0 are ever drawn by the sampler (outliers sit out the epoch).
    """

    def __init__(self, paths: Sequence[str], camids: Sequence[int], labels: np.ndarray,
                 agreement: Optional[np.ndarray], transform: Callable, two_views: bool = True):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} images but {len(labels)} pseudo labels")
        self.paths, self.camids = list(paths), list(camids)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.agreement = None if agreement is None else np.asarray(agreement, dtype=np.float32)
        self.transform = transform
        self.two_views = two_views

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Dict[str, object]:
        img = data_utils.read_image(self.paths[index])
        out: Dict[str, object] = {
            "images": self.transform(img),
            "targets": int(self.labels[index]),
            "camids": int(self.camids[index]),
            "index": int(index),
            "img_paths": self.paths[index],
        }
        if self.two_views:
            out["images2"] = self.transform(img)
        if self.agreement is not None:
            out["agreement"] = torch.from_numpy(self.agreement[index].copy())
        return out

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if (self.labels >= 0).any() else 0


class PseudoIdentityBatchSampler(Sampler):
    """Infinite P×K batches of dataset indices over pseudo identities (labels ≥ 0), with an
    identity's other K−1 images taken from other cameras where it has any.

    Per identity, as MMT's ``RandomMultipleGallerySampler`` (yxgeee/MMT ``mmt/utils/data/sampler.py``):
    draw one anchor image at random; the K−1 others come from the identity's images in *another*
    camera than the anchor's when there is at least one, otherwise from its other images (same
    camera); without ``camids`` every image counts as one camera. Two deliberate differences, both
    to keep every batch P×K: MMT draws without replacement only when the pool holds at least K
    images, here when it holds at least K−1 (so an identity with exactly K−1 other-camera images
    gives K distinct images); and where MMT emits a one-image identity alone (shifting every later
    batch boundary), here its anchor is repeated K times. As MMT, a pool smaller than K−1 is drawn
    with replacement and is not topped up with same-camera images.

    Each batch holds ``min(P, K_clusters)`` identities. The order is a pure function of ``seed``,
    so a resumed run replays the same batches; under DDP every rank draws the same global batch
    and keeps its own contiguous slice of identities.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, num_instances: int, seed: int,
                 rank: int = 0, world_size: int = 1, camids: Optional[Sequence[int]] = None):
        labels = np.asarray(labels)
        if batch_size % num_instances:
            raise ConfigError(f"SOLVER.IMS_PER_BATCH ({batch_size}) must be a multiple of "
                             f"DATALOADER.NUM_INSTANCE ({num_instances}).")
        ids = np.unique(labels[labels >= 0])
        if len(ids) == 0:
            raise ValueError("No pseudo identity to sample: every target image is an outlier.")
        if camids is None:
            cams = np.zeros(len(labels), dtype=np.int64)
        else:
            cams = np.asarray(camids)
            if cams.shape != labels.shape:
                raise ValueError(f"{len(cams)} camera ids for {len(labels)} pseudo labels")
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        starts = np.searchsorted(sorted_labels, ids, side="left")
        ends = np.searchsorted(sorted_labels, ids, side="right")
        self.members: List[np.ndarray] = [order[s:e] for s, e in zip(starts, ends)]
        self.member_cams: List[np.ndarray] = [cams[m] for m in self.members]
        self.num_instances = num_instances
        self.ids_per_batch = min(batch_size // num_instances, len(ids))
        self.seed, self.rank, self.world_size = int(seed), rank, world_size
        if self.ids_per_batch % world_size:
            self.ids_per_batch -= self.ids_per_batch % world_size
        if self.ids_per_batch == 0:
            raise ValueError(f"{len(ids)} pseudo identities cannot fill one batch slice per rank "
                             f"({world_size} ranks).")

    def _draw(self, rng: np.random.Generator, members: np.ndarray, cams: np.ndarray) -> np.ndarray:
        """An anchor and K−1 positives of one identity (dataset indices), anchor first."""
        a = int(rng.integers(len(members)))
        others = np.delete(np.arange(len(members)), a)
        other_cam = others[cams[others] != cams[a]]
        pool = other_cam if len(other_cam) else others
        k = self.num_instances - 1
        if k == 0:
            return members[[a]]
        if len(pool) == 0:  # a one-image identity
            return members[np.full(self.num_instances, a)]
        picks = rng.choice(pool, size=k, replace=len(pool) < k)
        return members[np.concatenate(([a], picks))]

    def __iter__(self) -> Iterator[List[int]]:
        rng = np.random.default_rng(self.seed)
        n_ids = len(self.members)
        per_rank = self.ids_per_batch // self.world_size
        while True:
            perm = rng.permutation(n_ids)
            for b in range(0, n_ids - self.ids_per_batch + 1, self.ids_per_batch):
                chosen = perm[b:b + self.ids_per_batch]
                batch = []
                for j, cid in enumerate(chosen):
                    # every rank draws every identity (same random stream), keeps its own slice
                    pick = self._draw(rng, self.members[cid], self.member_cams[cid])
                    if self.rank * per_rank <= j < (self.rank + 1) * per_rank:
                        batch.extend(int(i) for i in pick)
                yield batch


class NoPseudoLabelsLoader:
    """Stands in for the train loader while there are no pseudo labels to train on (before the
    first clustering, or an epoch skipped by the degenerate-clustering rule); iterating it says why."""

    dataset: List = []

    def __init__(self, reason: str):
        self.reason = reason

    def __iter__(self) -> "NoPseudoLabelsLoader":
        return self

    def __next__(self):
        raise RuntimeError(self.reason)

    def shutdown(self) -> None:
        pass
