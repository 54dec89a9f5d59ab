"""A tiny CPU model's config and a training batch as the pseudo-label loader hands it to INCLR, for the tests that
build models directly (modeling/, engine/): 64x32 images, batch 8 = 2 pseudo identities x 4."""
from typing import Any, Dict, Optional

import torch
from fastreid.config import CfgNode, get_cfg

from inclr_fastreid.config import add_inclr_config

NUM_SAMPLES = 20  # INCLR.NUM_SAMPLES: the target set the credibility buffers are sized for (batch indices < 20)
RESNET_DIM, OSNET_DIM = 512, 128  # feature dimension of ResNet-18 and of OSNet x0.25


def tiny_model_cfg(meta: str = "INCLR", num_classes: int = 12, osnet: bool = False, num_parts: Optional[int] = None,
                   amp: Optional[bool] = None, **inclr: Any) -> CfgNode:
    """FastReID's config with the add-on's keys for a tiny CPU model: ``meta`` over PartPoolHead with BNNecks and
    ``num_classes`` classifier rows, ResNet-18 or (``osnet``) OSNet x0.25 without ImageNet weights; ``num_parts``
    and ``amp`` set MODEL.HEADS.NUM_PARTS and SOLVER.AMP.ENABLED when given, ``inclr`` any INCLR key ("__" for
    ".": ``LGMR__ENABLED=False`` is INCLR.LGMR.ENABLED)."""
    cfg = add_inclr_config(get_cfg())
    cfg.MODEL.META_ARCHITECTURE = meta
    cfg.MODEL.HEADS.NAME = "PartPoolHead"
    cfg.MODEL.HEADS.WITH_BNNECK = True
    cfg.MODEL.HEADS.NUM_CLASSES = num_classes
    if osnet:  # a seventh of ResNet-18's build time
        cfg.MODEL.BACKBONE.NAME = "build_osnet_backbone"
        cfg.MODEL.BACKBONE.DEPTH, cfg.MODEL.BACKBONE.FEAT_DIM = "x0_25", OSNET_DIM
    else:
        cfg.MODEL.BACKBONE.DEPTH, cfg.MODEL.BACKBONE.FEAT_DIM = "18x", RESNET_DIM
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.DEVICE = "cpu"
    cfg.INCLR.NUM_SAMPLES = NUM_SAMPLES
    if num_parts is not None:
        cfg.MODEL.HEADS.NUM_PARTS = num_parts
    if amp is not None:
        cfg.SOLVER.AMP.ENABLED = amp
    for key, value in inclr.items():
        node = cfg.INCLR
        *path, leaf = key.split("__")
        for p in path:
            node = node[p]
        node[leaf] = value
    return cfg


def inclr_batch(seed: int = 0, parts: int = 3) -> Dict[str, torch.Tensor]:
    """8 images in two views (``images``, ``images2``), pseudo identities 0 and 2 x 4, their dataset indices, one
    camera, and LGMR's cross-agreement of ``parts`` part views (none for 0: a global-only model)."""
    g = torch.Generator().manual_seed(seed)
    batch = {
        "images": torch.rand(8, 3, 64, 32, generator=g) * 255,
        "images2": torch.rand(8, 3, 64, 32, generator=g) * 255,
        "targets": torch.tensor([0, 0, 0, 0, 2, 2, 2, 2]),
        "index": torch.tensor([3, 5, 7, 9, 11, 13, 15, 17]),
        "camids": torch.zeros(8, dtype=torch.long),
    }
    if parts:
        batch["agreement"] = torch.rand(8, parts, generator=g)
    return batch
