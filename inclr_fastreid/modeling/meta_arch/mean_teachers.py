"""The four networks of mutual mean teaching (MMT; docs/design.md §4.2): two students and their
exponential-moving-average teachers, each a FastReID backbone + PartPoolHead.

Students ``student1``/``student2`` are trained; teachers ``teacher1``/``teacher2`` start as copies of
their students and follow them by EMA (:meth:`MeanTeacherNetworks.update_teachers`, called by
EMAHook). Teachers are registered submodules with ``requires_grad=False``: checkpointed, never
optimised (FastReID's ``get_default_optimizer_params`` skips parameters that do not require grad).
What the teachers answer (clustering features, inference) is the mean of both or one of them.

The losses that train the students are the meta-architecture's (``inclr.py``, ``mutual_losses.py``).
"""
from __future__ import annotations

import logging
from typing import Dict, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..ema import ema_update
from ..heads.part_pool_head import PartPoolHead
from ..interface import MeanTeacherModel
from ..pretrained import read_source_state, source_weights_for, without_part_branches

__all__ = ["NETWORKS", "ReIDNet", "MeanTeacherNetworks", "mean_branches"]

logger = logging.getLogger("fastreid." + __name__)  # under "fastreid": the run log (log.txt) records it

NETWORKS = ("student1", "student2", "teacher1", "teacher2")


class ReIDNet(nn.Module):
    """One network: FastReID backbone + PartPoolHead (state-dict keys as in ``Baseline``)."""

    def __init__(self, backbone: nn.Module, heads: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.heads = heads

    def forward(self, images: torch.Tensor, targets: Optional[torch.Tensor] = None,
                num_live_classes: Optional[int] = None):
        return self.heads(self.backbone(images), targets, num_live_classes)

    def eval_features(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.heads.eval_features(self.backbone(images))


def mean_branches(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Per branch, the mean of two networks' normalised features, re-normalised."""
    return {k: F.normalize(a[k] + b[k], dim=1) for k in a}


class MeanTeacherNetworks(nn.Module, MeanTeacherModel):
    """Two students, two EMA teachers, and the input normalisation they share.

    A base for meta-architectures that train the students (INCLR); it computes no loss.
    """

    network_names = NETWORKS

    def __init__(self, networks: Dict[str, ReIDNet], pixel_mean: Sequence[float], pixel_std: Sequence[float]):
        super().__init__()
        if set(networks) != set(NETWORKS):
            raise ValueError(f"INCLR needs networks {NETWORKS}, got {sorted(networks)}")
        for name in NETWORKS:
            head = networks[name].heads
            if not isinstance(head, PartPoolHead):
                raise TypeError(
                    f"INCLR needs MODEL.HEADS.NAME: PartPoolHead; got {type(head).__name__} for {name}"
                )
            self.add_module(name, networks[name])
        # Teachers start as copies of their students and are never optimised.
        for t, s in (("teacher1", "student1"), ("teacher2", "student2")):
            getattr(self, t).load_state_dict(getattr(self, s).state_dict())
            getattr(self, t).requires_grad_(False)
        self.num_parts: int = self.student1.heads.num_parts
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(1, -1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------ inputs
    def preprocess_image(self, images: torch.Tensor) -> torch.Tensor:
        """(images - mean) / std, out of place: the caller's batch is left untouched (docs/design.md §9)."""
        images = images.to(self.device, non_blocking=True)
        if not torch.is_floating_point(images):
            images = images.float()
        return (images - self.pixel_mean) / self.pixel_std

    @staticmethod
    def _images(batched_inputs) -> torch.Tensor:
        if isinstance(batched_inputs, Mapping):
            return batched_inputs["images"]
        if isinstance(batched_inputs, torch.Tensor):
            return batched_inputs
        raise TypeError(f"batched_inputs must be a dict or a Tensor, got {type(batched_inputs).__name__}")

    # ------------------------------------------------------------------ teachers
    @torch.no_grad()
    def branch_features(self, batched_inputs) -> Dict[str, torch.Tensor]:
        """Features for clustering: per branch, mean of T1's and T2's normalised eval features,
        re-normalised ({"global", "part1", ...}); eval mode, no grad (docs/design.md §4.3 step 1)."""
        images = self.preprocess_image(self._images(batched_inputs))
        modes = (self.teacher1.training, self.teacher2.training)
        self.teacher1.eval()
        self.teacher2.eval()
        try:
            return mean_branches(self.teacher1.eval_features(images), self.teacher2.eval_features(images))
        finally:
            self.teacher1.train(modes[0])
            self.teacher2.train(modes[1])

    def teacher_features(self, images: torch.Tensor, which: str) -> Dict[str, torch.Tensor]:
        """Eval features of teacher ``t1``, ``t2``, or the ``mean`` of both (re-normalised per branch)."""
        if which == "t1":
            return self.teacher1.eval_features(images)
        if which == "t2":
            return self.teacher2.eval_features(images)
        return mean_branches(self.teacher1.eval_features(images), self.teacher2.eval_features(images))

    @torch.no_grad()
    def update_teachers(self, alpha: float) -> None:
        """Mean-teacher step: T1 <- EMA(S1), T2 <- EMA(S2) with weight ``alpha`` on the teacher."""
        ema_update(self.teacher1, self.student1, alpha)
        ema_update(self.teacher2, self.student2, alpha)

    # ------------------------------------------------------------------ weights
    def load_pretrained(self, path1: str, path2: str = "") -> None:
        """Load a source-pretrained FastReID ``Baseline`` + PartPoolHead checkpoint into S1/T1 and
        ``path2`` (default ``path1``) into S2/T2. Source classifier rows are skipped (the target
        classifiers get cluster centroids each epoch); any other missing, unexpected or
        mis-shaped key raises, listing them. With NUM_PARTS 0 the source's part branches are
        skipped (logged): every row starts from the same source models, pretrained with parts."""
        for path, (s_name, t_name) in ((path1, ("student1", "teacher1")), (path2 or path1, ("student2", "teacher2"))):
            state = read_source_state(path)
            if self.num_parts == 0:
                state, skipped = without_part_branches(state)
                if skipped:
                    logger.info("MODEL.HEADS.NUM_PARTS 0: skipped the %d part branches of %s (necks and "
                                "classifiers); %s and %s take its backbone and global branch.", skipped, path,
                                s_name, t_name)
            student = getattr(self, s_name)
            filtered = source_weights_for(student.state_dict(), state, path, NETWORKS)
            student.load_state_dict(filtered, strict=False)
            getattr(self, t_name).load_state_dict(filtered, strict=False)
            logger.info("Loaded %s into %s and %s (classifier rows skipped)", path, s_name, t_name)
