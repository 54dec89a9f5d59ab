#!/usr/bin/env python
"""Host memory of the PseudoLabelHook's feature extraction alone, at Market-1501's size and D=2048,
without the cost of real networks.

The hook's ``extract_features`` runs over N rendered images (the same cache as
benchmarks/benchmark_round.py) with a stub network whose ``cluster_features`` returns, per branch
(global + 3 parts), a fixed random projection of the image (D dims, L2-normalised by the hook):
the buffers the hook keeps are those of a real run, the network's cost is nil. Prints the RSS
before, the peak RSS during extraction (high-water mark reset first), what extraction added, the
bytes of the returned features and a CRC-32 of them (equal before and after a change = same
features).

    python benchmarks/measure_extract_memory.py                         # N=12,936, D=2048, 256x128
    python benchmarks/measure_extract_memory.py --num-images 2000 --dim 512
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import zlib

import torch
from torch import nn

from inclr_fastreid.benchmarking.memory import reset_peak_rss, status_mib
from inclr_fastreid.benchmarking.rendered import rendered_items
from inclr_fastreid.modeling.interface import PseudoLabelModel

#: the checkout's root: the config is read from its configs/
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class StubTeachers(nn.Module, PseudoLabelModel):
    """``branch_features`` like INCLR's: {"global", "part1".."part3"} -> (B, D), from a fixed
    projection of a 16x8 thumbnail of each image."""

    def __init__(self, dim: int, parts: int = 3):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.names = ["global"] + [f"part{p + 1}" for p in range(parts)]
        self.register_buffer("proj", torch.randn(len(self.names), 3 * 16 * 8, dim, generator=g))

    @torch.no_grad()
    def branch_features(self, batch):
        x = torch.nn.functional.adaptive_avg_pool2d(batch["images"].float(), (16, 8)).flatten(1) / 255.0
        return {n: x @ self.proj[i] for i, n in enumerate(self.names)}

    def set_pseudo_classes(self, num_classes, centroids):
        raise NotImplementedError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-images", type=int, default=12936)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--size", default="256x128")
    p.add_argument("--extract-batch", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--data-root", default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from inclr_fastreid.config import setup_cfg
    from inclr_fastreid.engine.features import extract_features

    h, w = (int(v) for v in args.size.lower().split("x"))
    cfg = setup_cfg(os.path.join(ROOT, "configs", "Base-INCLR.yml"),
                    ["MODEL.DEVICE", "cpu", "INPUT.SIZE_TEST", f"[{h},{w}]", "OUTPUT_DIR", "",
                     "INCLR.CLUSTER.BATCH_SIZE", str(args.extract_batch), "DATALOADER.NUM_WORKERS", str(args.workers)])
    items = rendered_items(args.num_images, args.data_root or os.getenv("FASTREID_DATASETS", "datasets"), args.seed)
    model = StubTeachers(args.dim)

    before = status_mib("VmRSS")
    reset_peak_rss()
    t0 = time.perf_counter()
    feats = extract_features(model, items, cfg)
    secs = time.perf_counter() - t0
    peak = status_mib("VmHWM")
    nbytes = sum(v.numel() * v.element_size() for v in feats.values())
    crc = 0
    for k in sorted(feats):
        crc = zlib.crc32(feats[k].contiguous().numpy().tobytes(), crc)
    print(f"N={args.num_images} D={args.dim} branches={len(feats)} size={args.size} "
          f"extract_batch={args.extract_batch} workers={args.workers}")
    print(f"features returned: {nbytes / 2 ** 20:.1f} MiB, crc32={crc:08x}, {secs:.1f} s")
    print(f"RSS before {before:.0f} MiB, peak during extraction {peak:.0f} MiB, "
          f"added by extraction {peak - before:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
