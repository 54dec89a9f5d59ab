#!/usr/bin/env python
"""Soak test of the clustering path: many clustering rounds back to back through the
PseudoLabelHook (extract teacher features -> cluster + LGMR -> install a fresh P x K loader), with
a few batches drawn after each round so the prefetch thread and loader workers are live.

Prints, per round, the peak RSS of that round (the high-water mark is reset before each round
through /proc/self/clear_refs), the RSS after it, OS threads, Python threads and child processes,
then the thread and process counts once the last loader is shut down. Exits 1 if the peak RSS keeps
growing or threads/processes leak (old loaders not shut down).

    python benchmarks/soak_clustering.py                      # 20 rounds on SynthB, random OSNet x0.25
    python benchmarks/soak_clustering.py --rounds 5 --weights <model.pth> MODEL.BACKBONE.DEPTH 18x ...

Linux only (reads /proc). Uses the CPU unless MODEL.DEVICE says otherwise.
"""
import argparse
import gc
import glob
import os
import sys
import threading
import time
import types

import inclr_fastreid  # noqa: F401  (host compat + registries, before fastreid)
import torch
from fastreid.modeling import build_model
from fastreid.utils.events import EventStorage

from inclr_fastreid.benchmarking.memory import reset_peak_rss
from inclr_fastreid.config import setup_cfg
from inclr_fastreid.data.target import build_target_train_items
from inclr_fastreid.engine.pseudo_label_hook import PseudoLabelHook
from inclr_fastreid.engine.state import PseudoLabelState
from inclr_fastreid.engine.trainer import INCLRTrainer

#: the checkout's root: the default config is read from its configs/
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULTS = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.NAME", "build_osnet_backbone", "MODEL.BACKBONE.DEPTH", "x0_25",
            "MODEL.BACKBONE.FEAT_DIM", "128", "INPUT.SIZE_TRAIN", "[64,32]", "INPUT.SIZE_TEST", "[64,32]",
            "INPUT.PADDING.SIZE", "4", "SOLVER.IMS_PER_BATCH", "32", "DATALOADER.NUM_INSTANCE", "4",
            "INCLR.CLUSTER.BATCH_SIZE", "256", "OUTPUT_DIR", ""]


def proc_status() -> dict:
    """VmHWM / VmRSS (MiB) and Threads of this process, from /proc/self/status."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) / 1024.0
            elif key == "Threads":
                out[key] = int(value)
    return out


def child_processes() -> int:
    """Live child processes of this process (DataLoader workers, ...)."""
    pids = set()
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        with open(path) as f:
            pids.update(f.read().split())
    return len(pids)


def python_threads() -> list:
    """Live Python threads, less tqdm's progress-bar monitor (one per process, started by the first
    bar and meant to outlive it)."""
    return [t for t in threading.enumerate() if type(t).__name__ != "TMonitor"]


def counts() -> dict:
    st = proc_status()
    return {"os_threads": st["Threads"], "py_threads": len(python_threads()), "children": child_processes()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", default=os.path.join(ROOT, "configs", "Base-INCLR.yml"))
    parser.add_argument("--dataset", default="SynthB", help="target training set (DATASET_REGISTRY name)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batches", type=int, default=3, help="batches drawn from each installed loader")
    parser.add_argument("--workers", type=int, default=2, help="DATALOADER.NUM_WORKERS")
    parser.add_argument("--weights", default="", help="source model (Baseline + PartPoolHead); default random")
    parser.add_argument("--tolerance-mib", type=float, default=64.0,
                        help="allowed rise of the per-round peak RSS from the early rounds to the last ones")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args()

    cfg = setup_cfg(args.config_file, DEFAULTS + ["DATASETS.NAMES", f'("{args.dataset}",)',
                                                  "DATALOADER.NUM_WORKERS", str(args.workers), *args.opts])
    items = build_target_train_items(cfg)
    cfg = INCLRTrainer.scale_for_adaptation(cfg, len(items))
    torch.manual_seed(0)
    model = build_model(cfg)
    if args.weights:
        model.load_pretrained(args.weights)
    model.train()
    trainer = types.SimpleNamespace(model=model, epoch=0, storage=EventStorage(0),
                                    _trainer=types.SimpleNamespace(data_loader=None, _data_loader_iter=None))
    state = PseudoLabelState()
    state.seed = 0
    hook = PseudoLabelHook(cfg, items, state)
    hook.trainer = trainer
    can_reset = reset_peak_rss()
    gc.collect()
    before = counts()
    print(f"{args.dataset}: {len(items)} target images, {args.rounds} rounds, {args.workers} loader workers, "
          f"torch threads {torch.get_num_threads()}, model {cfg.MODEL.BACKBONE.NAME} {cfg.MODEL.BACKBONE.DEPTH}")
    print(f"before: RSS {proc_status()['VmRSS']:.0f} MiB, {before}")
    if not can_reset:
        print("note: /proc/self/clear_refs not writable: 'peak' is the process high-water mark so far")
    print(f"{'round':>5} {'K':>5} {'action':>18} {'peak MiB':>9} {'RSS MiB':>8} {'os thr':>6} {'py thr':>6} "
          f"{'child':>5} {'sec':>6}")
    peaks = []
    for r in range(args.rounds):
        reset_peak_rss()
        t0 = time.perf_counter()
        trainer.epoch = r
        hook.before_epoch()  # close the old loader, reseed, cluster, install the new loader
        if not trainer.skip_steps:
            for _ in range(args.batches):
                next(trainer._trainer._data_loader_iter)
        st, c = proc_status(), counts()
        peaks.append(st["VmHWM"])
        rec = state.history[-1]
        print(f"{r:>5} {rec['num_clusters']:>5} {rec['action']:>18} {st['VmHWM']:>9.0f} {st['VmRSS']:>8.0f} "
              f"{c['os_threads']:>6} {c['py_threads']:>6} {c['children']:>5} {time.perf_counter() - t0:>6.1f}",
              flush=True)
    hook.after_train()
    gc.collect()
    time.sleep(1.0)  # let exited workers be reaped
    after = counts()
    print(f"after:  RSS {proc_status()['VmRSS']:.0f} MiB, {after}")

    ok = True
    if len(peaks) >= 6:
        early, late = max(peaks[1:4]), max(peaks[-3:])
        print(f"peak RSS: rounds 1-3 max {early:.0f} MiB, last 3 max {late:.0f} MiB (rise {late - early:+.0f} MiB, "
              f"tolerance {args.tolerance_mib:.0f})")
        ok &= late - early <= args.tolerance_mib
    # The prefetch thread and workers of the last loader are gone; the pools torch starts once stay.
    leaked = {k: after[k] - before[k] for k in ("py_threads", "children") if after[k] > before[k]}
    if leaked:
        print(f"LEAK after shutdown: {leaked}; threads: {[t.name for t in python_threads()]}")
        ok = False
    print("OK: no growth, no leak" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
