"""Export one teacher of an INCLR checkpoint as a deployable FastReID model (and ONNX graph).

    inclr-export --config-file configs/INCLR/duke2market.yml \
        --weights logs/INCLR/duke2market/model_final.pth --teacher t1 --output export/duke2market [--onnx]

Writes OUTPUT/model_final.pth + OUTPUT/config.yaml: a plain FastReID ``Baseline`` + ``PartPoolHead``
(``--teacher mean``: the parameter average of both teachers, BatchNorm statistics averaged too) whose
eval output is the config's INCLR.TEST_FEATURE feature. With ``--onnx`` also OUTPUT/model.onnx
(dynamic batch axis, normalisation inside the graph), checked with onnxruntime for batch 1 and 7.
Prints the feature dimension, input size and normalisation a caller needs. --config-file takes a
file, or when no such file exists, a config shipped with the package under the same name.

A mistake in the command or files ends with one ``error: ...`` line and exit status 2
(``INCLR_DEBUG=1`` shows its traceback).
"""
from __future__ import annotations

import argparse
import json
import os
from typing import List, Optional

from ..config import setup_cfg
from ..config_files import resolve_config_file
from ..errors import run_guarded
from ..export import TEACHERS, export_model, feature_description
from ..io import atomic_write_text


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line of ``inclr-export``."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config-file", required=True, metavar="FILE", help="the INCLR config of the run")
    ap.add_argument("--weights", required=True, metavar="PTH", help="the INCLR checkpoint (e.g. model_final.pth)")
    ap.add_argument("--teacher", choices=TEACHERS, default="t1",
                    help="t1 / t2: that mean teacher; mean: parameter average of both (default t1)")
    ap.add_argument("--output", required=True, metavar="DIR", help="folder for model_final.pth, config.yaml")
    ap.add_argument("--onnx", action="store_true", help="also write model.onnx and check it with onnxruntime")
    ap.add_argument("--repeats", type=int, default=10, metavar="N",
                    help="timed runs per batch size for the onnxruntime / PyTorch latency (median; default 10)")
    ap.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                    help="KEY VALUE config overrides, as for inclr-train (e.g. INCLR.TEST_FEATURE global)")
    return ap.parse_args(argv)


def export(args: argparse.Namespace) -> dict:
    """Export as ``args`` say and print what a caller of the exported model needs; returns
    :func:`inclr_fastreid.export.export_model`'s record."""
    cfg = setup_cfg(resolve_config_file(args.config_file), args.opts)
    res = export_model(cfg, args.weights, args.teacher, args.output, onnx=args.onnx, repeats=args.repeats)
    h, w = res["input_size"]
    which = "parameter average of teacher1 and teacher2 (BatchNorm statistics averaged)" \
        if res["teacher"] == "mean" else f"teacher{res['teacher'][1]}"
    print(f"Exported {which} of {res['source']}")
    print(f"  {res['model']}   FastReID Baseline + PartPoolHead, classifier cut to the {res['live_classes']} "
          "pseudo classes of the last clustering")
    print(f"  {res['config']}   load: inclr_fastreid.setup_cfg(<it>) + fastreid build_model + Checkpointer, or "
          f"inclr-train --config-file {res['config']} --eval-only")
    if "onnx" in res:
        print(f"  {res['onnx']}   input 'images', output 'features', dynamic batch axis")
    print(f"feature: {feature_description(res)}")
    print(f"input:   N x 3 x {h} x {w} float32, RGB, 0-255 (FastReID's test transform: resize to {h}x{w}, "
          "bicubic, no scaling to 0-1)")
    mean, std = (", ".join(f"{v:g}" for v in res[k]) for k in ("pixel_mean", "pixel_std"))
    print(f"normalisation: (x - [{mean}]) / [{std}] per channel (RGB), "
          + ("inside the ONNX graph and in Baseline.preprocess_image" if "onnx" in res else
             "in Baseline.preprocess_image"))
    check = res.get("onnx_check")
    if check:
        for b in check["batches"]:
            print(f"onnxruntime {check['onnxruntime']} check, batch {b['batch']}: max |onnx - torch| = "
                  f"{b['max_abs_diff']:.2e}; CPU latency per image {b['onnxruntime_ms_per_image']:.2f} ms "
                  f"(PyTorch {b['torch_ms_per_image']:.2f} ms, {check['torch_threads']} threads)")
        atomic_write_text(os.path.join(res["output_dir"], "onnx_check.json"), json.dumps(check, indent=2))
    return res


def main(argv: Optional[List[str]] = None) -> None:
    """The ``inclr-export`` command (and ``tools/export_model.py``)."""
    run_guarded(export, parse_args(argv))
