#!/usr/bin/env python
"""Check that the synthetic benchmark has a real domain gap and that body parts carry identity.

Trains a small CNN from scratch (cross-entropy on identities, 64x32 inputs, flip + pad-crop) on
SynthA train and on SynthB train, then evaluates both on SynthA and SynthB query/gallery with
cosine distance (Market protocol: same-identity gallery images from the query's camera are
ignored). Also reports mAP of the top / middle / bottom third of the last feature map alone.
A source-trained model must be clearly worse on the target than a target-trained one.

    python research/check_synthetic_gap.py [--root datasets] [--budget 100] [--threads 2]

``--budget`` is seconds of training per model (two models). Waits (up to --wait s) for the
1-minute load average to drop below --max-load before training, so timings stay honest.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

import inclr_fastreid  # noqa: F401  (host compat before fastreid.data)
from inclr_fastreid.data.synthetic import datasets as synthetic

logger = logging.getLogger("check_synthetic_gap")
IN_H, IN_W = 64, 32


def load_images(items: Sequence[Tuple[str, object, object]]) -> torch.Tensor:
    """(N, 3, 64, 32) float tensor in [0, 1] from (path, pid, camid) items."""
    arr = np.stack([np.asarray(Image.open(p).convert("RGB").resize((IN_W, IN_H), Image.BILINEAR))
                    for p, _, _ in items])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)


class SmallNet(nn.Module):
    """Conv stem (16) + three stages (32-64-128) -> 8x4 map -> GAP + BN neck; parts = row thirds."""

    def __init__(self, num_classes: int):
        super().__init__()

        def conv(cin: int, cout: int) -> List[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

        self.body = nn.Sequential(*conv(3, 16), nn.MaxPool2d(2), *conv(16, 32), *conv(32, 32), nn.MaxPool2d(2),
                                  *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2), *conv(64, 128),
                                  *conv(128, 128))
        self.neck = nn.BatchNorm1d(128)
        self.fc = nn.Linear(128, num_classes, bias=False)

    def forward(self, x: torch.Tensor):
        fmap = self.body((x - 0.45) / 0.25)
        feat = self.neck(fmap.mean((2, 3)))
        if self.training:
            return self.fc(feat)
        thirds = [t.mean((2, 3)) for t in torch.tensor_split(fmap, 3, dim=2)]
        return feat, thirds


def train(images: torch.Tensor, labels: torch.Tensor, budget_s: float, max_epochs: int, seed: int,
          device: str = "cpu") -> SmallNet:
    """Cross-entropy with label smoothing, Adam, flip and pad-crop, until budget or max_epochs."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = SmallNet(int(labels.max()) + 1).to(device)
    images, labels = images.to(device), labels.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)
    n, bs = len(images), 64
    t0, epoch = time.perf_counter(), 0
    while epoch < max_epochs and time.perf_counter() - t0 < budget_s:
        model.train()
        perm = torch.randperm(n, generator=g).to(device)
        tot, correct = 0.0, 0
        for i in range(0, n - bs + 1, bs):
            idx = perm[i:i + bs]
            x = images[idx]
            flip = (torch.rand(len(idx), generator=g) < 0.5).to(device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            x = F.pad(x, (2, 2, 4, 4), mode="replicate")
            dy, dx = torch.randint(0, 9, (1,), generator=g).item(), torch.randint(0, 5, (1,), generator=g).item()
            x = x[:, :, dy:dy + IN_H, dx:dx + IN_W]
            logits = model(x)
            loss = F.cross_entropy(logits, labels[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item() * len(idx)
            correct += (logits.argmax(1) == labels[idx]).sum().item()
        epoch += 1
        logger.info(f"  epoch {epoch}: loss {tot / n:.3f} train acc {correct / n:.3f} "
                    f"({time.perf_counter() - t0:.0f}s)")
    return model


@torch.no_grad()
def extract(model: SmallNet, images: torch.Tensor) -> Tuple[np.ndarray, List[np.ndarray]]:
    model.eval()
    dev = next(model.parameters()).device
    feats, parts = [], [[], [], []]
    for i in range(0, len(images), 256):
        f, p = model(images[i:i + 256].to(dev))
        feats.append(f.cpu())
        for k in range(3):
            parts[k].append(p[k].cpu())
    return torch.cat(feats).numpy(), [torch.cat(p).numpy() for p in parts]


def cosine_map_r1(qf: np.ndarray, gf: np.ndarray, qp: np.ndarray, gp: np.ndarray, qc: np.ndarray,
                  gc: np.ndarray) -> Tuple[float, float]:
    """mAP and rank-1 (%) with cosine similarity; same-pid same-camera gallery entries ignored."""
    qf = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gf = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    sim = qf @ gf.T
    aps, r1 = [], []
    for i in range(len(qf)):
        keep = ~((gp == qp[i]) & (gc == qc[i]))
        order = np.argsort(-sim[i][keep], kind="stable")
        match = (gp[keep] == qp[i])[order]
        if not match.any():
            continue
        hits = np.cumsum(match)
        aps.append(float((hits[match] / (np.flatnonzero(match) + 1)).mean()))
        r1.append(float(match[0]))
    return 100 * float(np.mean(aps)), 100 * float(np.mean(r1))


def wait_for_quiet_cpu(max_load: float, wait_s: float) -> None:
    t0 = time.time()
    while os.getloadavg()[0] > max_load and time.time() - t0 < wait_s:
        logger.info(f"load average {os.getloadavg()[0]:.2f} > {max_load}; waiting")
        time.sleep(15)
    if os.getloadavg()[0] > max_load:
        logger.warning(f"CPU still busy (load {os.getloadavg()[0]:.2f}); timings will be noisy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=os.getenv("FASTREID_DATASETS", "datasets"))
    ap.add_argument("--budget", type=float, default=95.0, help="training seconds per model")
    ap.add_argument("--max-epochs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-load", type=float, default=2.5)
    ap.add_argument("--wait", type=float, default=45.0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    data = {name: getattr(synthetic, name)(root=args.root, verbose=False) for name in ("SynthA", "SynthB")}
    tests: Dict[str, Tuple[torch.Tensor, np.ndarray, np.ndarray, int]] = {}
    for name, ds in data.items():
        items = ds.query + ds.gallery
        tests[name] = (load_images(items), np.array([p for _, p, _ in items]),
                       np.array([c for _, _, c in items]), len(ds.query))

    if args.device == "cpu":
        wait_for_quiet_cpu(args.max_load, args.wait)
    rows = []
    for src in ("SynthA", "SynthB"):
        train_items = data[src].train
        pids = sorted({p for _, p, _ in train_items})
        labels = torch.tensor([pids.index(p) for _, p, _ in train_items])
        logger.info(f"training on {src} train ({len(train_items)} images, {len(pids)} ids)")
        model = train(load_images(train_items), labels, args.budget, args.max_epochs, args.seed,
                      args.device)
        for tgt in ("SynthA", "SynthB"):
            x, pid, cam, nq = tests[tgt]
            f, parts = extract(model, x)
            res = [cosine_map_r1(f[:nq], f[nq:], pid[:nq], pid[nq:], cam[:nq], cam[nq:])]
            res += [cosine_map_r1(p[:nq], p[nq:], pid[:nq], pid[nq:], cam[:nq], cam[nq:]) for p in parts]
            rows.append((src, tgt, res))

    print_table = [f"{'train':7s} {'test':7s} | {'mAP':>5s} {'R1':>5s} | {'top mAP':>7s} {'mid mAP':>7s} "
                   f"{'bot mAP':>7s}"]
    for src, tgt, res in rows:
        (m, r1), parts = res[0], res[1:]
        print_table.append(f"{src:7s} {tgt:7s} | {m:5.1f} {r1:5.1f} | "
                           + " ".join(f"{p[0]:7.1f}" for p in parts))
    logger.info("\n" + "\n".join(print_table))
    a2b = next(r[2][0][0] for r in rows if r[0] == "SynthA" and r[1] == "SynthB")
    b2b = next(r[2][0][0] for r in rows if r[0] == "SynthB" and r[1] == "SynthB")
    logger.info(f"domain gap on SynthB: target-trained {b2b:.1f} vs source-trained {a2b:.1f} mAP "
                f"({b2b - a2b:+.1f})")


if __name__ == "__main__":
    main()
