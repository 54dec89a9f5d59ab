"""Export one teacher of an INCLR checkpoint as a plain FastReID model (and optionally ONNX).

An INCLR checkpoint holds four networks (``student1/2``, ``teacher1/2``), the optimiser and the
pseudo-label state. What is deployed is one network: a FastReID ``Baseline`` with
``PartPoolHead``, whose eval output is the ``INCLR.TEST_FEATURE`` feature (Eq. 9 joint feature by
default), exactly as INCLR's own inference with ``INCLR.TEST_MODEL t1`` / ``t2``.

``teacher="mean"`` is the *parameter average* of T1 and T2, with their BatchNorm running
statistics averaged as well (``mean_bn_state``). That is one network, so it is not INCLR's
``TEST_MODEL mean``, which runs both teachers and averages their features (twice the inference
cost); see :func:`mean_bn_state` for why the statistics are averaged and what that costs.

Modules: ``teachers.py`` (the weights of one teacher), ``baseline.py`` (its Baseline config, model and
files), ``onnx_check.py`` (ONNX graph and onnxruntime check). Used by ``inclr-export`` /
``tools/export_model.py``.
"""
from __future__ import annotations

from ..errors import ExportError
from .baseline import baseline_cfg, build_exported_model, check_inclr_cfg, export_model, feature_description
from .onnx_check import NormalizedFeatures, check_onnx, export_onnx
from .teachers import TEACHERS, live_classes, mean_bn_state, read_inclr_state, teacher_state

__all__ = ["TEACHERS", "ExportError", "check_inclr_cfg", "baseline_cfg", "teacher_state", "mean_bn_state",
           "export_model", "build_exported_model", "NormalizedFeatures", "export_onnx", "check_onnx",
           "read_inclr_state", "live_classes", "feature_description"]
