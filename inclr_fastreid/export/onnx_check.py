"""An exported Baseline as an ONNX graph, and the check that onnxruntime gives PyTorch's features
(max difference, median latency per image) on the same images.
"""
from __future__ import annotations

import os
import time
from typing import Any, Dict, Sequence

import torch
from torch import nn

from ..errors import ExportError

__all__ = ["NormalizedFeatures", "export_onnx", "check_onnx", "require_onnxruntime"]


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


def require_onnxruntime() -> None:
    """Raise :class:`ExportError` saying what to install when onnx or onnxruntime is missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ExportError(f"--onnx needs onnx and onnxruntime ({e}): pip install 'inclr-fastreid[export]' "
                          "(or pip install onnx onnxruntime).") from None
