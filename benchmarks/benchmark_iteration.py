#!/usr/bin/env python
"""Time one INCLR training iteration against one FastReID ``Baseline`` iteration.

Same batch, same backbone, same optimiser (Adam). Baseline: EmbeddingHead + BNNeck, CE + triplet
(FastReID's bag-of-tricks setup), forward + backward + step. INCLR: two students forward +
backward, two EMA teachers forward, step, EMA update. Iterations alternate between the two
models; the medians over ``--iters`` timed iterations (after ``--warmup``) and their ratio are
printed. Two students fwd+bwd and two teachers fwd is about 2.7x a Baseline iteration; the target
is <= 3.0x.

    python benchmarks/benchmark_iteration.py --device cpu --depth 18x --size 128x64 --batch 16
    python benchmarks/benchmark_iteration.py --device cuda --amp            # ResNet-50, 256x128, 64
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F

import inclr_fastreid  # noqa: F401  (host compat, before fastreid)
import inclr_fastreid.modeling  # noqa: F401  (registers INCLR, PartPoolHead)
from fastreid.config import get_cfg
from fastreid.modeling import build_model
from fastreid.solver.build import get_default_optimizer_params
from fastreid.utils.events import EventStorage
from inclr_fastreid import add_inclr_config
from inclr_fastreid.modeling.ema import ema_alpha
from inclr_fastreid.modeling.interface import MeanTeacherModel


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--depth", default="50x", choices=["18x", "34x", "50x", "101x"])
    p.add_argument("--size", default="256x128", help="input H x W (default 256x128)")
    p.add_argument("--batch", type=int, default=64, help="images per batch, 4 per pseudo identity")
    p.add_argument("--amp", action="store_true", help="torch.autocast + GradScaler (CUDA)")
    p.add_argument("--classes", type=int, default=500, help="K: live pseudo classes (Baseline: classes)")
    p.add_argument("--rows", type=int, default=0, help="INCLR classifier rows (MODEL.HEADS.NUM_CLASSES); 0 = --classes")
    p.add_argument("--iters", type=int, default=20, help="timed iterations per model")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    return p.parse_args(argv)


def make_cfg(args, meta: str, num_classes: int):
    cfg = get_cfg()
    add_inclr_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = meta
    cfg.MODEL.DEVICE = args.device
    cfg.MODEL.BACKBONE.DEPTH = args.depth
    cfg.MODEL.BACKBONE.FEAT_DIM = 512 if args.depth in ("18x", "34x") else 2048
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.HEADS.WITH_BNNECK = True
    if meta == "Baseline":
        cfg.MODEL.HEADS.NAME = "EmbeddingHead"
        cfg.MODEL.LOSSES.NAME = ("CrossEntropyLoss", "TripletLoss")
        cfg.MODEL.LOSSES.TRI.HARD_MINING = True
    else:
        cfg.MODEL.HEADS.NAME = "PartPoolHead"
        cfg.INCLR.NUM_SAMPLES = 10 * args.batch
    return cfg


def make_optimizer(model):
    params = get_default_optimizer_params(model, base_lr=3.5e-4, weight_decay=5e-4)
    return torch.optim.Adam(params)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but CUDA is not available")
    if args.amp and device.type != "cuda":
        raise SystemExit("--amp needs --device cuda")
    if args.batch % 4 or args.batch < 8:
        raise SystemExit("--batch must be a multiple of 4 and >= 8 (4 images per pseudo identity)")
    h, w = (int(v) for v in args.size.lower().split("x"))
    k = args.classes
    rows = args.rows or k
    if rows < k:
        raise SystemExit("--rows must be >= --classes")

    torch.manual_seed(0)
    baseline = build_model(make_cfg(args, "Baseline", k)).train()
    inclr = build_model(make_cfg(args, "INCLR", rows)).train()
    d = inclr.feat_dim
    gen = torch.Generator().manual_seed(0)
    inclr.set_pseudo_classes(
        k, {n: F.normalize(torch.randn(k, d, generator=gen), dim=1).to(device) for n in ("global", "part1", "part2", "part3")}
    )
    opt_b, opt_i = make_optimizer(baseline), make_optimizer(inclr)
    scaler_b = torch.amp.GradScaler("cuda", enabled=args.amp)
    scaler_i = torch.amp.GradScaler("cuda", enabled=args.amp)

    ids = args.batch // 4
    batch = {
        "images": (torch.rand(args.batch, 3, h, w, generator=gen) * 255).to(device),
        "images2": (torch.rand(args.batch, 3, h, w, generator=gen) * 255).to(device),
        "targets": (torch.arange(ids).repeat_interleave(4) * max(1, k // ids) % k).to(device),
        "index": torch.randperm(10 * args.batch, generator=gen)[: args.batch].to(device),
        "agreement": torch.rand(args.batch, 3, generator=gen).to(device),
    }

    def autocast():
        return torch.autocast("cuda", dtype=torch.float16) if args.amp else contextlib.nullcontext()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(model, opt, scaler, data, it):
        with autocast():
            loss = sum(model(data).values())
        opt.zero_grad(set_to_none=False)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if isinstance(model, MeanTeacherModel):
            model.update_teachers(ema_alpha(it + 1, 0.999))

    times = {"Baseline": [], "INCLR": []}
    peak = {}
    with EventStorage(0):
        for it in range(args.warmup + args.iters):
            for name, model, opt, scaler in (("Baseline", baseline, opt_b, scaler_b), ("INCLR", inclr, opt_i, scaler_i)):
                data = {"images": batch["images"].clone(), "targets": batch["targets"]}
                if name == "INCLR":
                    data.update(images2=batch["images2"].clone(), index=batch["index"], agreement=batch["agreement"])
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                sync()
                t0 = time.perf_counter()
                step(model, opt, scaler, data, it)
                sync()
                if it >= args.warmup:
                    times[name].append(time.perf_counter() - t0)
                if device.type == "cuda":
                    peak[name] = max(peak.get(name, 0), torch.cuda.max_memory_allocated())

    med = {n: statistics.median(v) for n, v in times.items()}
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"device={dev_name} depth={args.depth} size={h}x{w} batch={args.batch} amp={args.amp} "
        f"K={k} rows={rows} iters={args.iters} warmup={args.warmup}"
    )
    for n in ("Baseline", "INCLR"):
        extra = f"  peak {peak[n] / 2**30:.2f} GiB" if n in peak else ""
        spread = f"[{min(times[n]) * 1e3:.1f}, {max(times[n]) * 1e3:.1f}]"
        print(f"{n:9s} median {med[n] * 1e3:9.1f} ms/iter  min-max {spread}{extra}")
    print(f"ratio INCLR/Baseline = {med['INCLR'] / med['Baseline']:.2f}x (target <= 3.0x)")


if __name__ == "__main__":
    main()
