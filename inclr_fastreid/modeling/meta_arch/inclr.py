"""INCLR meta-architecture: mutual mean teaching of two part-aware networks with LGMR and IGMO
(docs/design.md §4.2, §4.4, §4.5; paper Eq. 1-8).

Four networks, each a FastReID backbone + PartPoolHead (``mean_teachers.py``): students
``student1``/``student2`` are trained, teachers ``teacher1``/``teacher2`` are their exponential
moving averages (EMAHook). Each student's loss terms are assembled in ``mutual_losses.py``; this
module holds what ties them together: the pseudo classes of the epoch (classifier rows, IGMO
centroids), the training step over both students, the credibility record, inference.

Batch contract (the pseudo-label loader): ``images`` (view 1, B x 3 x H x W float 0-255),
``images2`` (view 2; default ``images``), ``targets`` (pseudo labels 0..K-1), ``index`` (dataset
indices), ``camids``, ``agreement`` (B x P cross-agreement in [0, 1]; default ones).
View 1 feeds S1 and T1, view 2 feeds S2 and T2.

``MODEL.HEADS.NUM_PARTS 0`` trains the same four networks with the global branch alone: MMT as its
reference code trains it (yxgeee/MMT, global features only), the paper's Table III "Baseline"
(docs/design.md §4.2.5). LGMR needs part views and is refused then.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

import torch

from fastreid.config import configurable
from fastreid.modeling.backbones import build_backbone
from fastreid.modeling.heads import build_heads
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

from ...checks import check_lgmr_has_parts, check_test_feature, check_test_model
from ...registry import register_once
from ..heads.part_pool_head import branch_names, join_eval_features
from ..pseudo_classes import check_pseudo_classes, resize_head_rows, write_centroid_rows
from .mean_teachers import NETWORKS, MeanTeacherNetworks, ReIDNet
from .mutual_losses import StudentLosses

__all__ = ["INCLR", "ReIDNet"]


@register_once(META_ARCH_REGISTRY)
class INCLR(MeanTeacherNetworks):
    """Two students + two EMA teachers with MMT's mutual losses, LGMR and IGMO.

    Training ``forward`` returns ``loss_ce``, ``loss_soft_ce``, ``loss_tri``, ``loss_soft_tri`` and
    (IGMO on) ``loss_kl``, each the *sum* over the two students, as MMT's ``MMTTrainer`` sums them
    (yxgeee/MMT ``mmt/trainers.py``). Eval ``forward`` returns the ``INCLR.TEST_MODEL`` teacher's
    ``INCLR.TEST_FEATURE`` feature.
    """

    @configurable
    def __init__(
        self,
        *,
        networks: Dict[str, ReIDNet],
        pixel_mean,
        pixel_std,
        num_samples: int = 0,
        test_feature: str = "joint",
        test_model: str = "t1",
        kappa: float = 0.2,
        soft_ce_weight: float = 0.5,
        soft_tri_weight: float = 0.8,
        tri_margin: float = 0.0,
        label_smooth: float = 0.1,
        sum_students: bool = True,
        lgmr_enabled: bool = True,
        lgmr_beta: float = 0.5,
        aals_epoch: int = 5,
        igmo_enabled: bool = True,
        igmo_temp: float = 20.0,
        lambda_kl: float = 0.5,
        detach_weight: bool = True,
    ):
        super().__init__(networks, pixel_mean, pixel_std)
        check_test_feature(test_feature, self.num_parts)
        check_lgmr_has_parts(lgmr_enabled, self.num_parts)
        check_test_model(test_model)
        self.student_losses = StudentLosses(
            soft_ce_weight=soft_ce_weight, soft_tri_weight=soft_tri_weight, tri_margin=tri_margin,
            label_smooth=label_smooth, lgmr_enabled=lgmr_enabled, lgmr_beta=lgmr_beta, aals_epoch=aals_epoch,
            igmo_enabled=igmo_enabled, igmo_temp=igmo_temp, lambda_kl=lambda_kl, detach_weight=detach_weight,
        )
        head = self.student1.heads
        self.num_rows: int = head.weight.shape[0]
        self.feat_dim: int = head.feat_dim
        self.test_feature = test_feature
        self.test_model = test_model
        self.kappa = kappa
        self.sum_students = sum_students

        # K: classifier rows 0..K-1 are live this epoch
        self.register_buffer("num_live_classes", torch.zeros((), dtype=torch.long))
        # IGMO's dynamic classifier: the global cluster centroids (rows 0..K-1 live)
        self.register_buffer("igmo_centroids", torch.zeros(self.num_rows, self.feat_dim))
        # Latest IGMO credibility of each target training image (NaN = not seen yet)
        self.register_buffer("credibility", torch.full((int(num_samples),), float("nan")))
        # The epoch being trained (start_epoch), checkpointed: decides the parts' loss (AALS warm-up)
        self.register_buffer("current_epoch", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, cfg) -> dict:
        inclr = cfg.get("INCLR")
        if inclr is None:
            raise KeyError("INCLR needs the INCLR.* config keys: call inclr_fastreid.add_inclr_config(cfg)")
        networks = {name: ReIDNet(build_backbone(cfg), build_heads(cfg)) for name in NETWORKS}
        return {
            "networks": networks,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "num_samples": inclr.NUM_SAMPLES,
            "test_feature": inclr.TEST_FEATURE,
            "test_model": inclr.TEST_MODEL,
            "kappa": inclr.KAPPA,
            "soft_ce_weight": inclr.MMT.SOFT_CE,
            "soft_tri_weight": inclr.MMT.SOFT_TRI,
            "tri_margin": inclr.MMT.TRI_MARGIN,
            "label_smooth": inclr.MMT.LABEL_SMOOTH,
            "sum_students": inclr.MMT.SUM_STUDENTS,
            "lgmr_enabled": inclr.LGMR.ENABLED,
            "lgmr_beta": inclr.LGMR.BETA,
            "aals_epoch": inclr.LGMR.AALS_EPOCH,
            "igmo_enabled": inclr.IGMO.ENABLED,
            "igmo_temp": inclr.IGMO.TEMP,
            "lambda_kl": inclr.IGMO.LAMBDA_KL,
            "detach_weight": inclr.IGMO.DETACH_WEIGHT,
        }

    # ------------------------------------------------------------------ pseudo classes
    @torch.no_grad()
    def set_pseudo_classes(self, num_classes: int, centroids: Mapping[str, torch.Tensor]) -> None:
        """Start an epoch with K = ``num_classes`` pseudo classes.

        ``centroids``: {"global", "part1", ..., "partP"} -> K x D L2-normalised cluster centroids.
        Writes rows 0..K-1 of every classifier of all four networks (branch by branch), the IGMO
        centroid buffer (global centroids; rows >= K zeroed) and ``num_live_classes``.
        """
        names = branch_names(self.num_parts)
        cents = check_pseudo_classes(num_classes, self.num_rows, centroids, names, self.feat_dim)
        k = int(num_classes)
        for net_name in NETWORKS:
            write_centroid_rows(getattr(self, net_name).heads.classifier_weights(), cents, names, k)
        self.igmo_centroids.zero_()
        self.igmo_centroids[:k].copy_(cents["global"].to(self.igmo_centroids.device, self.igmo_centroids.dtype))
        self.num_live_classes.fill_(k)

    def classifier_rows(self) -> int:
        """Rows of each classifier of the four networks (and of IGMO's centroid buffer)."""
        return self.num_rows

    @torch.no_grad()
    def resize_classifier_rows(self, rows: int) -> None:
        """Every classifier of the four networks, and IGMO's centroid buffer, to ``rows`` rows."""
        rows = int(rows)
        if rows < int(self.num_live_classes):
            raise ValueError(f"cannot shrink the classifiers to {rows} rows below the {int(self.num_live_classes)} "
                             "live pseudo classes")
        for net_name in NETWORKS:
            resize_head_rows(getattr(self, net_name).heads, rows)
        cents = self.igmo_centroids.new_zeros(rows, self.feat_dim)
        keep = min(rows, self.num_rows)
        cents[:keep] = self.igmo_centroids[:keep]
        self.igmo_centroids = cents  # a registered buffer: assignment replaces it
        self.num_rows = rows

    @torch.no_grad()
    def start_epoch(self, epoch: int) -> None:
        """The pseudo-label hook starts epoch ``epoch`` (0-based): parts train with label-smoothed CE
        while it is < ``aals_epoch``, with AALS from then on (docs/design.md §4.4)."""
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
        self.current_epoch.fill_(int(epoch))

    # ------------------------------------------------------------------ forward
    def forward(self, batched_inputs):
        if not self.training:
            return self.inference(batched_inputs)
        if not isinstance(batched_inputs, Mapping):
            raise TypeError("INCLR training needs a dict batch (images, targets, ...)")
        k = int(self.num_live_classes)
        if k == 0:
            raise RuntimeError(
                "INCLR has no pseudo classes yet: call set_pseudo_classes(K, centroids) (the pseudo-label "
                "hook does, before each epoch) before training."
            )
        images1 = self.preprocess_image(batched_inputs["images"])
        images2 = (
            self.preprocess_image(batched_inputs["images2"]) if "images2" in batched_inputs else images1
        )
        targets = batched_inputs["targets"].to(self.device).long()
        if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= k):
            raise ValueError(
                f"targets must be pseudo labels in [0, {k}); got [{int(targets.min())}, {int(targets.max())}]"
                " (drop outliers in the loader)"
            )
        b = targets.shape[0]
        agreement = batched_inputs.get("agreement")
        if agreement is None:
            agreement = torch.ones(b, self.num_parts, device=self.device)
        else:
            agreement = agreement.to(self.device).float()
            if tuple(agreement.shape) != (b, self.num_parts):
                raise ValueError(f"agreement must be B x P = ({b}, {self.num_parts}), got {tuple(agreement.shape)}")

        s1 = self.student1(images1, targets, k)
        s2 = self.student2(images2, targets, k)
        with torch.no_grad():
            t1 = self.teacher1(images1, targets, k)
            t2 = self.teacher2(images2, targets, k)

        centroids, epoch = self.igmo_centroids[:k], int(self.current_epoch)
        l1, w1 = self.student_losses(s1, t1, t2, targets, agreement, centroids, epoch)
        l2, w2 = self.student_losses(s2, t2, t1, targets, agreement, centroids, epoch)
        self._record_credibility(batched_inputs.get("index"), (w1 + w2) / 2)
        scale = 1.0 if self.sum_students else 0.5  # summed over the students, as MMT (or averaged)
        return {name: scale * (l1[name] + l2[name]) for name in l1}

    def credibility_values(self) -> torch.Tensor:
        """Latest IGMO credibility per target training image (N,), NaN where not seen yet."""
        return self.credibility

    @torch.no_grad()
    def _record_credibility(self, index: Optional[torch.Tensor], weight: torch.Tensor) -> None:
        n = self.credibility.numel()
        if n == 0 or index is None:
            return
        index = torch.as_tensor(index).to(self.device).long().view(-1)
        weight = weight.detach().float().view(-1)
        if index.numel() != weight.numel():
            raise ValueError(f"index has {index.numel()} entries for a batch of {weight.numel()}")
        index, weight = _all_gather_pairs(index, weight)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
            raise ValueError(
                f"batch index out of range [0, {n}) (INCLR.NUM_SAMPLES={n}): got max {int(index.max())}"
            )
        self.credibility[index] = weight

    # ------------------------------------------------------------------ inference
    def inference(self, batched_inputs) -> torch.Tensor:
        """Eval features of the ``TEST_MODEL`` teacher (t1 | t2 | mean of both, re-normalised per
        branch), joined per ``TEST_FEATURE`` (Eq. 9)."""
        images = self.preprocess_image(self._images(batched_inputs))
        return join_eval_features(self.teacher_features(images, self.test_model), self.test_feature, self.kappa)


def _all_gather_pairs(index: torch.Tensor, weight: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Gather (index, credibility) pairs from all ranks (equal per-rank batch sizes, as FastReID's
    samplers give), so every rank's credibility buffer sees the whole global batch."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return index, weight
    world = dist.get_world_size()
    idx_list = [torch.empty_like(index) for _ in range(world)]
    w_list = [torch.empty_like(weight) for _ in range(world)]
    dist.all_gather(idx_list, index)
    dist.all_gather(w_list, weight)
    return torch.cat(idx_list), torch.cat(w_list)
