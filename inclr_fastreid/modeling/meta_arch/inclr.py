"""INCLR meta-architecture: mutual mean teaching of two part-aware networks with LGMR and IGMO
(docs/design.md §4.2, §4.4, §4.5; paper Eq. 1-8).

Four networks, each a FastReID backbone + PartPoolHead: students ``student1``/``student2`` are
trained, teachers ``teacher1``/``teacher2`` are their exponential moving averages (EMAHook),
registered submodules with ``requires_grad=False`` (checkpointed, never optimised: FastReID's
``get_default_optimizer_params`` skips parameters that do not require grad).

Batch contract (the pseudo-label loader): ``images`` (view 1, B x 3 x H x W float 0-255),
``images2`` (view 2; default ``images``), ``targets`` (pseudo labels 0..K-1), ``index`` (dataset
indices), ``camids``, ``agreement`` (B x P cross-agreement in [0, 1]; default ones).
View 1 feeds S1 and T1, view 2 feeds S2 and T2.

``MODEL.HEADS.NUM_PARTS 0`` trains the same four networks with the global branch alone: MMT as its
reference code trains it (yxgeee/MMT, global features only), the paper's Table III "Baseline"
(docs/design.md §4.2.5). LGMR needs part views and is refused then.
"""
from __future__ import annotations

import logging
from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from fastreid.config import configurable
from fastreid.modeling.backbones import build_backbone
from fastreid.modeling.heads import build_heads
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

from ...checks import (check_aals_epoch, check_label_smooth, check_lgmr_has_parts, check_mixing_weights,
                        check_test_feature, check_test_model)
from ...registry import register_once
from ..ema import ema_update
from ..heads.part_pool_head import PartPoolHead, branch_names, join_eval_features
from ..interface import MeanTeacherModel
from ..pretrained import read_source_state, source_weights_for
from ..pseudo_classes import check_pseudo_classes, resize_head_rows, write_centroid_rows
from ..losses import (
    credibility_weights,
    label_smoothed_cross_entropy,
    lgmr_global_ce,
    lgmr_part_loss,
    soft_cross_entropy,
    soft_softmax_triplet,
    softmax_triplet,
    uncertainty_weighted_kl_loss,
)

__all__ = ["INCLR", "ReIDNet"]

logger = logging.getLogger("fastreid." + __name__)  # under "fastreid": the run log (log.txt) records it

NETWORKS = ("student1", "student2", "teacher1", "teacher2")
LOSS_NAMES = ("loss_ce", "loss_soft_ce", "loss_tri", "loss_soft_tri", "loss_kl")


class ReIDNet(nn.Module):
    """One network: FastReID backbone + PartPoolHead (state-dict keys as in ``Baseline``)."""

    def __init__(self, backbone: nn.Module, heads: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.heads = heads

    def forward(self, images: torch.Tensor, targets=None, num_live_classes: Optional[int] = None):
        return self.heads(self.backbone(images), targets, num_live_classes)

    def eval_features(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.heads.eval_features(self.backbone(images))


def _mean_over_parts(terms: list):
    """Mean of the per-part loss terms; 0 without part branches (NUM_PARTS 0: the global terms alone, as MMT)."""
    return sum(terms) / len(terms) if terms else 0.0


def _without_part_branches(state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], int]:
    """``state`` less its part branches (``heads.part_bottlenecks.*``, ``heads.part_weights.*``), and how
    many branches that was: a NUM_PARTS P source model feeds a global-only (NUM_PARTS 0) network."""
    prefixes = ("heads.part_bottlenecks.", "heads.part_weights.")
    parts = {k.split(".")[2] for k in state if k.startswith(prefixes)}
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}, len(parts)


def _mean_branches(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k: F.normalize(a[k] + b[k], dim=1) for k in a}


@register_once(META_ARCH_REGISTRY)
class INCLR(nn.Module, MeanTeacherModel):
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
        check_test_feature(test_feature, networks["student1"].heads.num_parts)
        check_lgmr_has_parts(lgmr_enabled, networks["student1"].heads.num_parts)
        check_test_model(test_model)
        check_mixing_weights(soft_ce_weight, soft_tri_weight)
        check_label_smooth(label_smooth)
        check_aals_epoch(aals_epoch)
        # Teachers start as copies of their students and are never optimised.
        for t, s in (("teacher1", "student1"), ("teacher2", "student2")):
            getattr(self, t).load_state_dict(getattr(self, s).state_dict())
            getattr(self, t).requires_grad_(False)

        head = self.student1.heads
        self.num_parts: int = head.num_parts
        self.num_rows: int = head.weight.shape[0]
        self.feat_dim: int = head.feat_dim
        self.test_feature = test_feature
        self.test_model = test_model
        self.kappa = kappa
        self.soft_ce_weight = soft_ce_weight
        self.soft_tri_weight = soft_tri_weight
        self.tri_margin = tri_margin
        self.label_smooth = label_smooth
        self.sum_students = sum_students
        self.lgmr_enabled = lgmr_enabled
        self.lgmr_beta = lgmr_beta
        self.aals_epoch = int(aals_epoch)
        self.igmo_enabled = igmo_enabled
        self.igmo_temp = igmo_temp
        self.lambda_kl = lambda_kl
        self.detach_weight = detach_weight

        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(1, -1, 1, 1), False)
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

    network_names = NETWORKS

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

    @torch.no_grad()
    def branch_features(self, batched_inputs) -> Dict[str, torch.Tensor]:
        """Features for clustering: per branch, mean of T1's and T2's normalised eval features,
        re-normalised ({"global", "part1", ...}); eval mode, no grad (docs/design.md §4.3 step 1)."""
        images = self.preprocess_image(self._images(batched_inputs))
        modes = (self.teacher1.training, self.teacher2.training)
        self.teacher1.eval()
        self.teacher2.eval()
        try:
            return _mean_branches(self.teacher1.eval_features(images), self.teacher2.eval_features(images))
        finally:
            self.teacher1.train(modes[0])
            self.teacher2.train(modes[1])

    @torch.no_grad()
    def update_teachers(self, alpha: float) -> None:
        """Mean-teacher step: T1 <- EMA(S1), T2 <- EMA(S2) with weight ``alpha`` on the teacher."""
        ema_update(self.teacher1, self.student1, alpha)
        ema_update(self.teacher2, self.student2, alpha)

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

        l1, w1 = self._student_losses(s1, t1, t2, targets, agreement, k)
        l2, w2 = self._student_losses(s2, t2, t1, targets, agreement, k)
        self._record_credibility(batched_inputs.get("index"), (w1 + w2) / 2)
        scale = 1.0 if self.sum_students else 0.5  # summed over the students, as MMT (or averaged)
        return {name: scale * (l1[name] + l2[name]) for name in l1}

    def _student_losses(self, s: dict, own_t: dict, other_t: dict, targets, agreement, k: int):
        """Losses of one student (its own mean teacher for IGMO, the other one for MMT's soft terms).

        Label smoothing (``label_smooth``, MMT's CrossEntropyLabelSmooth) applies where the reference
        code uses it: the plain hard CE of the global and part branches (LGMR off; MMT
        ``mmt/trainers.py``). With LGMR on, the global target is PPLR's refined target (``PGLR``) from
        the first epoch; the parts train with label-smoothed CE while ``current_epoch`` <
        ``aals_epoch`` and with the agreement-aware loss (``AALS``, no further epsilon) from then on,
        as ``PPLRTrainer`` (yoonkicho/PPLR ``pplr/trainers.py``, ``pplr/loss/loss.py``).
        """
        p = self.num_parts
        if self.lgmr_enabled:
            ce_g = lgmr_global_ce(s["cls_outputs"], targets, s["part_pred_class_logits"], agreement, self.lgmr_beta)
            if int(self.current_epoch) < self.aals_epoch:  # PPLR's warm-up
                ce_p = sum(label_smoothed_cross_entropy(z, targets, self.label_smooth)
                           for z in s["part_cls_outputs"]) / p
            else:
                ce_p = sum(lgmr_part_loss(s["part_cls_outputs"][j], targets, agreement[:, j]) for j in range(p)) / p
        else:
            eps = self.label_smooth
            ce_g = label_smoothed_cross_entropy(s["cls_outputs"], targets, eps)
            ce_p = _mean_over_parts([label_smoothed_cross_entropy(z, targets, eps) for z in s["part_cls_outputs"]])
        soft_g = soft_cross_entropy(s["pred_class_logits"], other_t["pred_class_logits"])
        soft_p = _mean_over_parts(
            [soft_cross_entropy(z, zt) for z, zt in zip(s["part_pred_class_logits"], other_t["part_pred_class_logits"])]
        )
        losses = {
            "loss_ce": (1.0 - self.soft_ce_weight) * (ce_g + ce_p),
            "loss_soft_ce": self.soft_ce_weight * (soft_g + soft_p),
            "loss_tri": (1.0 - self.soft_tri_weight) * softmax_triplet(s["global_pool"], targets, self.tri_margin),
            "loss_soft_tri": self.soft_tri_weight
            * soft_softmax_triplet(s["global_pool"], targets, other_t["global_pool"]),
        }
        centroids = self.igmo_centroids[:k]
        if self.igmo_enabled:
            loss_kl, weight, _ = uncertainty_weighted_kl_loss(
                s["global_neck"], own_t["global_neck"], centroids, targets, self.igmo_temp, self.detach_weight
            )
            losses["loss_kl"] = self.lambda_kl * loss_kl
        else:  # still measure the credibility (label-quality log), without a loss
            weight = credibility_weights(s["global_neck"], own_t["global_neck"], centroids, self.igmo_temp)
        return losses, weight

    def credibility_values(self) -> torch.Tensor:
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
        if self.test_model == "t1":
            feats = self.teacher1.eval_features(images)
        elif self.test_model == "t2":
            feats = self.teacher2.eval_features(images)
        else:
            feats = _mean_branches(self.teacher1.eval_features(images), self.teacher2.eval_features(images))
        return join_eval_features(feats, self.test_feature, self.kappa)

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
                state, skipped = _without_part_branches(state)
                if skipped:
                    logger.info("MODEL.HEADS.NUM_PARTS 0: skipped the %d part branches of %s (necks and "
                                "classifiers); %s and %s take its backbone and global branch.", skipped, path,
                                s_name, t_name)
            student = getattr(self, s_name)
            filtered = source_weights_for(student.state_dict(), state, path, NETWORKS)
            student.load_state_dict(filtered, strict=False)
            getattr(self, t_name).load_state_dict(filtered, strict=False)
            logger.info("Loaded %s into %s and %s (classifier rows skipped)", path, s_name, t_name)


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
