"""One teacher of an INCLR checkpoint as a plain FastReID ``Baseline`` + ``PartPoolHead``: its config,
the model built and checked key by key, and the files written (``model_final.pth``, ``config.yaml``,
optionally ``model.onnx``); see the package docstring for what is exported.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping

import torch
from fastreid.config import CfgNode
from torch import nn

from ..errors import ExportError
from ..io import atomic_torch_save, atomic_write_text, check_state_dict
from .onnx_check import check_onnx, export_onnx, require_onnxruntime
from .teachers import TEACHERS, live_classes, read_inclr_state, teacher_state

__all__ = ["check_inclr_cfg", "baseline_cfg", "build_exported_model", "export_model", "feature_description"]


def check_inclr_cfg(cfg: CfgNode) -> None:
    """The config must be the INCLR config the checkpoint was trained with."""
    if cfg.MODEL.META_ARCHITECTURE != "INCLR":
        raise ExportError(f"--config-file has MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r}: "
                          "give the INCLR config the checkpoint was trained with.")
    if cfg.MODEL.HEADS.NAME != "PartPoolHead":
        raise ExportError(f"MODEL.HEADS.NAME is {cfg.MODEL.HEADS.NAME!r}; INCLR networks use PartPoolHead.")


def baseline_cfg(inclr_cfg: CfgNode, num_classes: int, weights: str = "", output_dir: str = "") -> CfgNode:
    """The FastReID ``Baseline`` + ``PartPoolHead`` config of one INCLR network: same backbone,
    head (NUM_PARTS, EMBEDDING_DIM, ...), input size, normalisation, INCLR.KAPPA and
    INCLR.TEST_FEATURE (so the eval output is the same feature), ``num_classes`` classifier rows.
    With NUM_PARTS 0 the state dict has exactly EmbeddingHead's keys (docs/design.md §4.2.5)."""
    check_inclr_cfg(inclr_cfg)
    cfg = inclr_cfg.clone()
    cfg.defrost()
    cfg.MODEL.META_ARCHITECTURE = "Baseline"
    cfg.MODEL.HEADS.NUM_CLASSES = int(num_classes)
    cfg.MODEL.BACKBONE.PRETRAIN = False  # the weights are in model_final.pth
    cfg.MODEL.WEIGHTS = weights
    cfg.INCLR.CLUSTER.ENABLED = False
    cfg.INCLR.TEST_MODEL = "t1"
    cfg.INCLR.WEIGHTS2 = ""
    cfg.INCLR.NUM_SAMPLES = 0
    if output_dir:
        cfg.OUTPUT_DIR = output_dir
    cfg.freeze()
    return cfg


def build_exported_model(cfg: CfgNode, state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """FastReID's ``build_model(cfg)`` (a Baseline) on the CPU with ``state`` loaded, after the
    project's strict key check (every key and shape must match)."""
    from fastreid.modeling import build_model

    cpu = cfg.clone()
    cpu.defrost()
    cpu.MODEL.DEVICE = "cpu"
    model = build_model(cpu)
    check_state_dict(model.state_dict(), dict(state), source,
                     hint="The INCLR config given does not describe the networks in this checkpoint "
                          "(MODEL.BACKBONE.*, MODEL.HEADS.*).")
    model.load_state_dict(state, strict=True)
    return model.eval()


def export_model(cfg: CfgNode, weights: str, teacher: str, output_dir: str, onnx: bool = False,
                 check: bool = True, repeats: int = 10) -> Dict[str, Any]:
    """Write ``output_dir/model_final.pth`` and ``config.yaml`` (and ``model.onnx``): see the module
    docstring. ``cfg``: the INCLR config (from :func:`inclr_fastreid.config.setup_cfg`). Returns
    what a caller must know (paths, feature dimension, input size, normalisation, ONNX check)."""
    if teacher not in TEACHERS:
        raise ExportError(f"--teacher {teacher!r}: use one of {', '.join(TEACHERS)}.")
    check_inclr_cfg(cfg)  # before reading a large checkpoint
    if onnx and check:
        require_onnxruntime()
    state = read_inclr_state(weights)
    k = live_classes(state)
    net_state = teacher_state(state, teacher, k)
    out = os.path.abspath(output_dir)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise ExportError(f"Cannot create the output folder {out!r}: {e.strerror}.") from None
    pth = os.path.join(out, "model_final.pth")
    bcfg = baseline_cfg(cfg, k, weights=pth, output_dir=os.path.join(out, "eval"))
    model = build_exported_model(bcfg, net_state, f"teacher {teacher} of {weights!r}")

    height, width = (int(s) for s in bcfg.INPUT.SIZE_TEST)
    if bcfg.INPUT.CROP.ENABLED:
        crop = list(bcfg.INPUT.CROP.SIZE)
        height, width = (int(crop[0]), int(crop[0] if len(crop) == 1 else crop[1]))
    with torch.no_grad():
        dim = int(model(torch.zeros(1, 3, height, width)).shape[1])

    meta = {"source": os.path.abspath(weights), "teacher": teacher, "test_feature": bcfg.INCLR.TEST_FEATURE,
            "kappa": float(bcfg.INCLR.KAPPA), "feature_dim": dim, "input_size": [height, width],
            "pixel_mean": [float(v) for v in bcfg.MODEL.PIXEL_MEAN],
            "pixel_std": [float(v) for v in bcfg.MODEL.PIXEL_STD], "live_classes": k,
            "mean_bn": "averaged" if teacher == "mean" else ""}
    atomic_torch_save({"model": model.state_dict(), "inclr_export": meta}, pth)
    atomic_write_text(os.path.join(out, "config.yaml"), bcfg.dump())
    result: Dict[str, Any] = {**meta, "output_dir": out, "model": pth, "config": os.path.join(out, "config.yaml"),
                              "num_parts": int(bcfg.MODEL.HEADS.NUM_PARTS)}
    if onnx:
        onnx_path = os.path.join(out, "model.onnx")
        export_onnx(model, onnx_path, height, width)
        result["onnx"] = onnx_path
        if check:
            result["onnx_check"] = check_onnx(onnx_path, model, height, width, repeats=max(1, int(repeats)))
    return result


def feature_description(result: Mapping[str, Any]) -> str:
    """One line: what the output feature is and how to compare two of them."""
    feat, dim, kappa, parts = result["test_feature"], result["feature_dim"], result["kappa"], result["num_parts"]
    if parts == 0:  # the global branch alone: joint is the global feature
        return (f"{feat} (MODEL.HEADS.NUM_PARTS 0, the global branch alone): L2-normalised, dimension {dim}; the "
                "weights also load into FastReID's EmbeddingHead, whose output is this feature before normalising")
    if feat == "joint":
        per = dim // (1 + parts)
        norm = (1 + parts * kappa) ** 0.5
        return (f"joint (Eq. 9): [f_g, sqrt(kappa) f_1 .. sqrt(kappa) f_{parts}] of L2-normalised {per}-d branch "
                f"features, kappa={kappa:g}, dimension {dim}, L2 norm {norm:.4g}; squared Euclidean distance = "
                f"d_g + kappa * sum_p d_p (cosine gives the same ranking)")
    return f"{feat}: L2-normalised, dimension {dim}"
