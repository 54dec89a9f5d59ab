"""PartPoolHead: global + horizontal-stripe part features with a BNNeck and classifier each
(docs/design.md §4.1; paper §III-A, Eq. 1-2 and Eq. 9).

Works under FastReID's stock ``Baseline`` (``MODEL.HEADS.NAME: PartPoolHead``): its training
output carries the keys ``Baseline.losses`` reads for the global branch, plus the part branches.

``NUM_PARTS 0`` leaves the global branch alone (pooling, BNNeck, classifier as with parts): MMT's
own network (yxgeee/MMT, global features only), the paper's Table III "Baseline". Its state dict then
has exactly the keys of FastReID's ``EmbeddingHead`` (docs/design.md §4.2.5).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from fastreid.config import configurable
from fastreid.layers import any_softmax, get_norm, pooling
from fastreid.layers.weight_init import weights_init_kaiming
from fastreid.modeling.heads import REID_HEADS_REGISTRY

from ...checks import branch_names, check_test_feature
from ...errors import ConfigError  # a ValueError: wrong values in the config are user errors
from ...registry import register_once

__all__ = ["PartPoolHead", "stripe_bounds", "join_eval_features", "branch_names"]


def stripe_bounds(height: int, num_parts: int) -> List[Tuple[int, int]]:
    """Row ranges [start, end) of ``num_parts`` horizontal stripes covering ``height`` rows.

    Rule: stripes are contiguous, do not overlap and cover every row; each has
    ``height // num_parts`` rows and the first ``height % num_parts`` stripes (top of the image)
    get one extra row. E.g. H=8, P=3 -> rows 0-2, 3-5, 6-7 (3/3/2); H=16, P=3 -> 6/5/5.
    """
    if num_parts < 1:
        raise ConfigError(f"MODEL.HEADS.NUM_PARTS must be >= 1, got {num_parts}")
    if height < num_parts:
        raise ConfigError(
            f"The backbone feature map has {height} rows, fewer than MODEL.HEADS.NUM_PARTS="
            f"{num_parts}: use a taller input (INPUT.SIZE_TRAIN/SIZE_TEST), LAST_STRIDE 1, "
            f"or fewer parts."
        )
    base, extra = divmod(height, num_parts)
    bounds, start = [], 0
    for p in range(num_parts):
        end = start + base + (1 if p < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


def join_eval_features(feats: Dict[str, torch.Tensor], test_feature: str, kappa: float) -> torch.Tensor:
    """Eval feature from per-branch L2-normalised features (Eq. 9).

    ``joint`` = concat(f_g, sqrt(kappa) f_1, ..., sqrt(kappa) f_P), so the squared Euclidean
    distance between two joint features is d_g + kappa * sum_p d_p with d the squared Euclidean
    distance of the normalised branch features (without parts, P = 0: f_g). ``global`` / ``partK``
    return that branch alone.
    """
    if test_feature == "joint":
        names = sorted((k for k in feats if k.startswith("part")), key=lambda k: int(k[4:]))
        scale = math.sqrt(kappa)
        return torch.cat([feats["global"]] + [feats[k] * scale for k in names], dim=1)
    if test_feature not in feats:
        raise KeyError(
            f"INCLR.TEST_FEATURE={test_feature!r} is not one of joint, {', '.join(feats)}"
        )
    return feats[test_feature]


def _make_neck(feat_dim: int, embedding_dim: int, with_bnneck: bool, norm_type: str) -> nn.Sequential:
    neck: List[nn.Module] = []
    if embedding_dim > 0:
        neck.append(nn.Conv2d(feat_dim, embedding_dim, 1, 1, bias=False))
        feat_dim = embedding_dim
    if with_bnneck:
        neck.append(get_norm(norm_type, feat_dim, bias_freeze=True))
    return nn.Sequential(*neck)


@register_once(REID_HEADS_REGISTRY)
class PartPoolHead(nn.Module):
    """Global pooled feature (``POOL_LAYER``) + ``NUM_PARTS`` average-pooled horizontal stripes.

    Each branch has its own neck (optional 1x1 embedding conv as EmbeddingHead, then a BNNeck,
    FastReID's ``get_norm(MODEL.HEADS.NORM, D, bias_freeze=True)`` on B x D x 1 x 1, i.e.
    BatchNorm1d with a frozen bias) and its own classifier weight (num_classes x D) used through
    the shared ``CLS_LAYER`` (Linear / CosSoftmax / ArcSoftmax / CircleSoftmax, SCALE, MARGIN).
    Parameter names of the global branch are EmbeddingHead's (``bottleneck``, ``weight``).
    """

    @configurable
    def __init__(
        self,
        *,
        feat_dim: int,
        embedding_dim: int,
        num_classes: int,
        num_parts: int,
        neck_feat: str,
        pool_type: str,
        cls_type: str,
        scale: float,
        margin: float,
        with_bnneck: bool,
        norm_type: str,
        kappa: float = 0.2,
        test_feature: str = "joint",
    ):
        super().__init__()
        if not hasattr(pooling, pool_type):
            raise ConfigError(f"MODEL.HEADS.POOL_LAYER={pool_type!r}: expected one of {pooling.__all__}")
        if not hasattr(any_softmax, cls_type):
            raise ConfigError(f"MODEL.HEADS.CLS_LAYER={cls_type!r}: expected one of {any_softmax.__all__}")
        if neck_feat not in ("before", "after"):
            raise ConfigError(f"MODEL.HEADS.NECK_FEAT={neck_feat!r}: expected 'before' or 'after'")
        if num_parts < 0:
            raise ConfigError(f"MODEL.HEADS.NUM_PARTS must be >= 0 (0 = the global branch alone), got {num_parts}")
        if kappa < 0:
            raise ConfigError(f"INCLR.KAPPA must be >= 0, got {kappa}")
        check_test_feature(test_feature, num_parts)

        self.num_parts = num_parts
        self.neck_feat = neck_feat
        self.kappa = float(kappa)
        self.test_feature = test_feature
        self.num_classes = num_classes
        self.feat_dim = embedding_dim if embedding_dim > 0 else feat_dim

        self.pool_layer = getattr(pooling, pool_type)()
        self.bottleneck = _make_neck(feat_dim, embedding_dim, with_bnneck, norm_type)
        self.part_bottlenecks = nn.ModuleList(
            [_make_neck(feat_dim, embedding_dim, with_bnneck, norm_type) for _ in range(num_parts)]
        )
        self.weight = nn.Parameter(torch.empty(num_classes, self.feat_dim))
        self.part_weights = nn.ParameterList(
            [nn.Parameter(torch.empty(num_classes, self.feat_dim)) for _ in range(num_parts)]
        )
        self.cls_layer = getattr(any_softmax, cls_type)(num_classes, scale, margin)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.bottleneck.apply(weights_init_kaiming)
        self.part_bottlenecks.apply(weights_init_kaiming)
        nn.init.normal_(self.weight, std=0.01)
        for w in self.part_weights:
            nn.init.normal_(w, std=0.01)

    @classmethod
    def from_config(cls, cfg) -> dict:
        heads = cfg.MODEL.HEADS
        inclr = cfg.get("INCLR")  # absent when the user added only NUM_PARTS
        return {
            "feat_dim": cfg.MODEL.BACKBONE.FEAT_DIM,
            "embedding_dim": heads.EMBEDDING_DIM,
            "num_classes": heads.NUM_CLASSES,
            "num_parts": heads.get("NUM_PARTS", 3),
            "neck_feat": heads.NECK_FEAT,
            "pool_type": heads.POOL_LAYER,
            "cls_type": heads.CLS_LAYER,
            "scale": heads.SCALE,
            "margin": heads.MARGIN,
            "with_bnneck": heads.WITH_BNNECK,
            "norm_type": heads.NORM,
            "kappa": inclr.get("KAPPA", 0.2) if inclr is not None else 0.2,
            "test_feature": inclr.get("TEST_FEATURE", "joint") if inclr is not None else "joint",
        }

    # ------------------------------------------------------------------ features
    def _pooled(self, features: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Global pooled map (B x C x 1 x 1) and the P stripe-averaged maps (B x C x 1 x 1)."""
        if features.dim() != 4:
            raise ValueError(f"PartPoolHead expects a B x C x H x W feature map, got {tuple(features.shape)}")
        global_pool = self.pool_layer(features)
        if self.num_parts == 0:  # the global branch alone
            return global_pool, []
        parts = [
            features[:, :, start:end].mean(dim=(2, 3), keepdim=True)
            for start, end in stripe_bounds(int(features.shape[2]), self.num_parts)  # int: constant when traced
        ]
        return global_pool, parts

    def _necks(self, features: torch.Tensor):
        global_pool, part_pools = self._pooled(features)
        global_neck = self.bottleneck(global_pool)[..., 0, 0]
        part_necks = [neck(p)[..., 0, 0] for neck, p in zip(self.part_bottlenecks, part_pools)]
        return global_pool[..., 0, 0], [p[..., 0, 0] for p in part_pools], global_neck, part_necks

    def eval_features(self, features: torch.Tensor) -> Dict[str, torch.Tensor]:
        """All branches' L2-normalised BNNeck features {"global", "part1", ...} (for clustering).

        Uses the current mode of the BNNecks: call it in eval mode for running statistics.
        """
        _, _, global_neck, part_necks = self._necks(features)
        names = branch_names(self.num_parts)
        return {n: F.normalize(f, dim=1) for n, f in zip(names, [global_neck] + part_necks)}

    def join(self, feats: Dict[str, torch.Tensor], test_feature: Optional[str] = None) -> torch.Tensor:
        """Eval output from per-branch normalised features, per ``INCLR.TEST_FEATURE`` (Eq. 9)."""
        return join_eval_features(feats, test_feature or self.test_feature, self.kappa)

    # ------------------------------------------------------------------ logits
    def _logits(self, neck: torch.Tensor, weight: torch.Tensor, targets: Optional[torch.Tensor]):
        if self.cls_layer.__class__.__name__ == "Linear":
            logits = F.linear(neck, weight)
        else:
            logits = F.linear(F.normalize(neck), F.normalize(weight))
        if targets is None:  # no margin without labels (e.g. a teacher's prediction)
            cls_outputs = logits * self.cls_layer.s
        else:
            # cls_layer works in place: give it a copy
            cls_outputs = self.cls_layer(logits.clone(), targets)
        return cls_outputs, logits.mul(self.cls_layer.s)

    def forward(
        self,
        features: torch.Tensor,
        targets: Optional[torch.Tensor] = None,
        num_live_classes: Optional[int] = None,
    ):
        """Eval: the ``TEST_FEATURE`` tensor. Training: a dict (see module docstring).

        ``num_live_classes`` K (INCLR) restricts every classifier to rows 0..K-1 before the
        matrix product, so logits are B x K and rows >= K get no gradient; None = all rows.
        """
        global_pool, part_pools, global_neck, part_necks = self._necks(features)
        if not self.training:
            names = branch_names(self.num_parts)
            feats = {n: F.normalize(f, dim=1) for n, f in zip(names, [global_neck] + part_necks)}
            return self.join(feats)

        k = self.num_classes if num_live_classes is None else int(num_live_classes)
        cls_outputs, pred_logits = self._logits(global_neck, self.weight[:k], targets)
        part_cls, part_pred = [], []
        for neck, w in zip(part_necks, self.part_weights):
            c, p = self._logits(neck, w[:k], targets)
            part_cls.append(c)
            part_pred.append(p)

        if self.neck_feat == "before":
            feat, part_feats = global_pool, part_pools
        else:
            feat, part_feats = global_neck, part_necks
        return {
            "cls_outputs": cls_outputs,
            "pred_class_logits": pred_logits,
            "features": feat,
            "part_cls_outputs": part_cls,
            "part_pred_class_logits": part_pred,
            "part_features": part_feats,
            "global_neck": global_neck,
            "part_necks": part_necks,
            "global_pool": global_pool,
            "part_pools": part_pools,
        }

    def classifier_weights(self) -> Sequence[torch.Tensor]:
        """Classifier weights in branch order (global, part1, ..., partP)."""
        return [self.weight] + list(self.part_weights)
