"""Export one teacher of an INCLR checkpoint as a plain FastReID model (and optionally ONNX).

An INCLR checkpoint holds four networks (``student1/2``, ``teacher1/2``), the optimiser and the
pseudo-label state. What is deployed is one network: a FastReID ``Baseline`` with
``PartPoolHead``, whose eval output is the ``INCLR.TEST_FEATURE`` feature (Eq. 9 joint feature by
default), exactly as INCLR's own inference with ``INCLR.TEST_MODEL t1`` / ``t2``.

``teacher="mean"`` is the *parameter average* of T1 and T2, with their BatchNorm running
statistics averaged as well (``mean_bn_state``). That is one network, so it is not INCLR's
``TEST_MODEL mean``, which runs both teachers and averages their features (twice the inference
cost); see :func:`mean_bn_state` for why the statistics are averaged and what that costs.

Used by ``tools/export_model.py``.
"""
from __future__ import annotations

import os
import time
from typing import Any, Dict, Mapping, Optional, Sequence

import torch
from torch import nn

from ..errors import UserError
from ..io import CheckpointLoadError, atomic_torch_save, atomic_write_text, check_state_dict, safe_torch_load

__all__ = ["TEACHERS", "ExportError", "check_inclr_cfg", "baseline_cfg", "teacher_state", "mean_bn_state", "export_model",
           "build_exported_model", "NormalizedFeatures", "export_onnx", "check_onnx"]

TEACHERS = ("t1", "t2", "mean")
_PREFIX = {"t1": "teacher1.", "t2": "teacher2."}


class ExportError(UserError, ValueError):
    """The export cannot be done as asked (wrong config kind, output folder not writable, ...)."""


def _strip_module(state: Mapping[str, Any]) -> Dict[str, Any]:
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def _is_classifier_key(key: str) -> bool:
    return key == "heads.weight" or key.startswith("heads.part_weights.")


def read_inclr_state(path: str) -> Dict[str, torch.Tensor]:
    """The model state dict of an INCLR checkpoint (``{"model": ...}`` as the trainer saves it)."""
    ckpt = safe_torch_load(path)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointLoadError(f"{path!r} is not a FastReID checkpoint (no 'model' state dict of tensors).")
    state = _strip_module(state)
    if not any(k.startswith("teacher1.") for k in state):
        hint = ("It looks like a plain FastReID model (a source model, or one exported already): "
                "it needs no export; load it with MODEL.META_ARCHITECTURE Baseline."
                if any(k.startswith("backbone.") for k in state) else "")
        raise CheckpointLoadError(f"{path!r} is not an INCLR checkpoint: it has no teacher1.* weights. {hint}".strip())
    return state


def live_classes(state: Mapping[str, torch.Tensor]) -> int:
    """K: pseudo classes of the last clustering (classifier rows 0..K-1 are live); all rows when the
    checkpoint has none (a model that never clustered)."""
    rows = int(state["teacher1.heads.weight"].shape[0])
    k = int(state["num_live_classes"]) if "num_live_classes" in state else 0
    return k if 0 < k <= rows else rows


def mean_bn_state(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Average of two state dicts of the same network: every floating-point entry (parameters and
    BatchNorm running mean / variance) is (a + b) / 2; integer buffers (``num_batches_tracked``)
    are taken from ``a``.

    Why the BN statistics are averaged rather than recomputed on target images: the export then
    needs only the checkpoint (no dataset on the export machine, no choice of images or
    augmentation, the same file every time), and it is what the parameter average implies for
    two teachers that are EMAs of students trained on the same target batches. Its cost, the gap
    to INCLR's two-network feature average, is measured on the synthetic model in the README.
    """
    if a.keys() != b.keys():
        raise CheckpointLoadError(f"teacher1 and teacher2 differ in their keys: {sorted(set(a) ^ set(b))[:10]}")
    out = {}
    for k, va in a.items():
        vb = b[k]
        if va.shape != vb.shape:
            raise CheckpointLoadError(f"teacher1 and teacher2 differ in the shape of {k}: "
                                      f"{tuple(va.shape)} vs {tuple(vb.shape)}")
        if torch.is_floating_point(va):
            out[k] = ((va.double() + vb.double()) / 2).to(va.dtype)
        else:
            out[k] = va.clone()
    return out


def teacher_state(state: Mapping[str, torch.Tensor], teacher: str, num_classes: Optional[int] = None
                  ) -> Dict[str, torch.Tensor]:
    """The ``Baseline`` state dict (``backbone.*``, ``heads.*``) of teacher ``t1``, ``t2`` or their
    parameter ``mean``, classifiers cut to the first ``num_classes`` rows (default: the live K)."""
    if teacher not in TEACHERS:
        raise ExportError(f"--teacher {teacher!r}: use one of {', '.join(TEACHERS)}.")
    k = live_classes(state) if num_classes is None else int(num_classes)

    def one(prefix: str) -> Dict[str, torch.Tensor]:
        return {key[len(prefix):]: v for key, v in state.items() if key.startswith(prefix)}

    if teacher == "mean":
        net = mean_bn_state(one(_PREFIX["t1"]), one(_PREFIX["t2"]))
    else:
        net = {key: v.clone() for key, v in one(_PREFIX[teacher]).items()}
    return {key: (v[:k].clone() if _is_classifier_key(key) else v) for key, v in net.items()}


def check_inclr_cfg(cfg) -> None:
    """The config must be the INCLR config the checkpoint was trained with."""
    if cfg.MODEL.META_ARCHITECTURE != "INCLR":
        raise ExportError(f"--config-file has MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r}: "
                          "give the INCLR config the checkpoint was trained with.")
    if cfg.MODEL.HEADS.NAME != "PartPoolHead":
        raise ExportError(f"MODEL.HEADS.NAME is {cfg.MODEL.HEADS.NAME!r}; INCLR networks use PartPoolHead.")


def baseline_cfg(inclr_cfg, num_classes: int, weights: str = "", output_dir: str = ""):
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


def build_exported_model(cfg, state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
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


class NormalizedFeatures(nn.Module):
    """Images in, eval features out: ``(images - PIXEL_MEAN) / PIXEL_STD`` then backbone and head.

    Input: float N x 3 x H x W, RGB, 0-255 (FastReID's test transform: resize to INPUT.SIZE_TEST,
    bicubic, no scaling to 0-1). Output: N x D, the ``INCLR.TEST_FEATURE`` feature.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.backbone = model.backbone
        self.heads = model.heads
        self.register_buffer("pixel_mean", model.pixel_mean.detach().clone().view(1, -1, 1, 1))
        self.register_buffer("pixel_std", model.pixel_std.detach().clone().view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.heads(self.backbone((images - self.pixel_mean) / self.pixel_std))


def export_onnx(model: nn.Module, path: str, height: int, width: int, opset: int = 17) -> None:
    """``model`` (a Baseline in eval mode) wrapped in :class:`NormalizedFeatures`, exported to
    ``path`` with a dynamic batch axis (input ``images``, output ``features``). TorchScript-based
    exporter (``dynamo=False``): the graph is traced at the test size, which is fixed anyway."""
    import warnings

    wrapper = NormalizedFeatures(model).eval()
    dummy = torch.rand(2, 3, height, width) * 255
    tmp = path + ".tmp"
    with warnings.catch_warnings():  # tracer warnings about Python ints from shapes (fixed test size)
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (dummy,), tmp, dynamo=False, opset_version=opset,
                          input_names=["images"], output_names=["features"],
                          dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}})
    os.replace(tmp, path)


def _median_seconds(fn, repeats: int) -> float:
    for _ in range(3 if repeats >= 3 else 1):  # untimed runs first
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def check_onnx(path: str, model: nn.Module, height: int, width: int, batch_sizes: Sequence[int] = (1, 7),
               tolerance: float = 1e-4, repeats: int = 10, seed: int = 0) -> Dict[str, Any]:
    """Run ``path`` under onnxruntime (CPU) and ``model`` under PyTorch on the same images (uniform
    0-255, seeded) for each batch size: max |onnx - torch| and median latency per image of both
    (median of ``repeats`` timed runs after up to 3 untimed ones; each library with its default
    thread count).
    Raises RuntimeError if a difference exceeds ``tolerance`` (that is a bug, not a user error)."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(path))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    wrapper = NormalizedFeatures(model).eval()
    gen = torch.Generator().manual_seed(seed)
    report: Dict[str, Any] = {"onnxruntime": ort.__version__, "torch": torch.__version__,
                              "torch_threads": torch.get_num_threads(), "tolerance": tolerance, "batches": []}
    for b in batch_sizes:
        images = torch.rand(b, 3, height, width, generator=gen) * 255
        with torch.no_grad():
            expected = wrapper(images)
        feed = {"images": images.numpy()}
        got = torch.from_numpy(session.run(["features"], feed)[0])
        if tuple(got.shape) != tuple(expected.shape):
            raise RuntimeError(f"ONNX output shape {tuple(got.shape)} != PyTorch {tuple(expected.shape)} at batch {b}")
        diff = float((got - expected).abs().max())
        with torch.no_grad():
            t_torch = _median_seconds(lambda: wrapper(images), repeats)
        t_ort = _median_seconds(lambda: session.run(["features"], feed), repeats)
        report["batches"].append({"batch": b, "max_abs_diff": diff, "onnxruntime_ms_per_image": 1000 * t_ort / b,
                                  "torch_ms_per_image": 1000 * t_torch / b})
        if not diff <= tolerance:
            raise RuntimeError(f"ONNX output differs from PyTorch by {diff:.3g} (> {tolerance}) at batch {b}: "
                               f"the exported graph is wrong; please report it with {path}.")
    return report


def _require_onnxruntime() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ExportError(f"--onnx needs onnx and onnxruntime ({e}): pip install 'inclr-fastreid[export]' "
                          "(or pip install onnx onnxruntime).") from None


def export_model(cfg, weights: str, teacher: str, output_dir: str, onnx: bool = False,
                 check: bool = True, repeats: int = 10) -> Dict[str, Any]:
    """Write ``output_dir/model_final.pth`` and ``config.yaml`` (and ``model.onnx``): see the module
    docstring. ``cfg``: the INCLR config (from :func:`inclr_fastreid.config.setup_cfg`). Returns
    what a caller must know (paths, feature dimension, input size, normalisation, ONNX check)."""
    if teacher not in TEACHERS:
        raise ExportError(f"--teacher {teacher!r}: use one of {', '.join(TEACHERS)}.")
    check_inclr_cfg(cfg)  # before reading a large checkpoint
    if onnx and check:
        _require_onnxruntime()
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
