#!/usr/bin/env python
"""Write a PNG contact sheet of the synthetic domains so a person can look at the data.

One block per domain: each row is one identity, its images sorted by camera (train split).

    python tools/render_samples.py --out synth_samples.png [--domains SynthA SynthB SynthC]
        [--ids 8] [--per-id 12] [--root datasets] [--scale 0.1]
"""
from __future__ import annotations

import argparse
import logging
import os
from collections import defaultdict

import numpy as np
from PIL import Image

import inclr_fastreid  # noqa: F401  (host compat before fastreid.data)
from inclr_fastreid.data.synthetic import datasets as synthetic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="synth_samples.png")
    ap.add_argument("--domains", nargs="+", default=["SynthA", "SynthB", "SynthC"])
    ap.add_argument("--ids", type=int, default=8, help="identities (rows) per domain")
    ap.add_argument("--per-id", type=int, default=12, help="images (columns) per identity")
    ap.add_argument("--root", default=os.getenv("FASTREID_DATASETS", "datasets"))
    ap.add_argument("--scale", type=float, default=None, help="INCLR_SYNTH_SCALE override")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    rows = []
    h, w = 128, 64
    for name in args.domains:
        if name not in synthetic.DOMAINS:
            ap.error(f"unknown domain {name!r}; choose from {sorted(synthetic.DOMAINS)}")
        ds = getattr(synthetic, name)(root=args.root, scale=args.scale, seed=args.seed, verbose=False)
        by_pid = defaultdict(list)
        for path, pid, cam in ds.train:
            by_pid[pid].append((cam, path))
        for pid in sorted(by_pid, key=lambda p: int(p.rsplit("_", 1)[1]))[: args.ids]:
            items = sorted(by_pid[pid])[: args.per_id]
            row = np.full((h, w * args.per_id, 3), 255, np.uint8)
            for j, (_, path) in enumerate(items):
                row[:, j * w:(j + 1) * w] = np.asarray(Image.open(path).convert("RGB"))
            rows.append(row)
        rows.append(np.full((6, w * args.per_id, 3), 0, np.uint8))  # separator between domains
    Image.fromarray(np.concatenate(rows[:-1], axis=0)).save(args.out)
    logging.info(f"wrote {args.out}")


if __name__ == "__main__":
    main()
