#!/usr/bin/env python
"""Cost of one INCLR adaptation round at the paper's scale, and where its memory goes.

One round of the real code path on rendered synthetic pedestrians (SynthB's renderer, ~18 images
per identity over 6 cameras, 128x64 like Market-1501's own images, resized by the pipeline to
``--size``), with the INCLR meta-architecture built from ``configs/Base-INCLR.yml``:

  (a) extract   the PseudoLabelHook's feature extraction: both mean teachers, global + 3 parts,
                over all N target images (INCLR.CLUSTER.BATCH_SIZE per batch);
  (b) cluster   the rest of the hook's ``before_epoch``: k-reciprocal Jaccard + DBSCAN in the four
                spaces, LGMR, centroids into the classifiers, the new P x K loader;
  (c) train     FastReID's run_step (the project's checked Simple/AMP trainer) + the EMA update on
                the hook's loader: ``--iters`` timed iterations after ``--warmup``, extrapolated to
                INCLR.ITERS_PER_EPOCH (400) from their mean, with the share spent waiting for data;
  (d) checkpoint the per-round checkpoint (CHECKPOINT_PERIOD 1): model, optimiser, pseudo labels,
                written by the project's checkpointer to a temporary folder, then deleted.

It prints each stage's time and share of the round, the projected time of ``--rounds`` (100) rounds
(evaluation every TEST.EVAL_PERIOD rounds is not included), peak process RSS per stage (and CUDA
max allocated / reserved per stage on a GPU), and a memory breakdown of one training iteration:
bytes of parameters, gradient buffer, Adam state, input batch and tensors saved for backward,
and the peak of live tensor bytes in the iteration with the phase it falls in. The breakdown is
counted from the tensors themselves (a dispatch-mode tracker), so it means the same on the CPU
and on a GPU, where CUDA's max_memory_allocated is printed beside it.

    python benchmarks/benchmark_round.py                                   # GPU: N=12,936, ResNet-50, 256x128, 64, AMP
    python benchmarks/benchmark_round.py --small                           # CI: CPU, N=200, ResNet-18 at 64x32
    python benchmarks/benchmark_round.py --device cpu --num-images 48 --batch 16 --iters 1 --warmup 1 \
        --no-checkpoint INCLR.CLASSIFIER_ROWS 12936                   # MMT's one row per image, on a CPU
    python benchmarks/benchmark_round.py --small INCLR.CLASSIFIER_ROWS 100 # config overrides at the end

Network weights are random unless ``--weights`` (a source model, as MODEL.WEIGHTS) is given; the
cost of a round does not depend on them, except through the clustering (K, outliers). Random
features often give fewer than 2 clusters, and the hook then skips the epoch (its rule): the tool
says so, and trains on the rendered identities as pseudo labels instead (K ~ N/18, near
Market-1501's 500-750 clusters at N=12,936); the clustering is timed all the same.
Classifier rows are what the trainer allocates (INCLR.CLASSIFIER_ROWS 0: K under k-means, grown to the
round's clusters under DBSCAN); pass ``INCLR.CLASSIFIER_ROWS 12936`` to count one row per Market-1501 image.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import types
import weakref
from typing import Any, Dict, List

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from inclr_fastreid.benchmarking.memory import reset_peak_rss, status_mib
from inclr_fastreid.benchmarking.rendered import rendered_items

#: the checkout's root: the default config is read from its configs/
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MIB = 2.0 ** 20
GIB = 2.0 ** 30
# --small: well under a minute on 2 shared CPU cores (CI)
SMALL = dict(device="cpu", num_images=200, depth="18x", size="64x32", batch=16, iters=3, warmup=1,
             extract_batch=100, workers=0)
DEPTH_DIM = {"18x": 512, "34x": 512, "50x": 2048, "101x": 2048}
#: training images of the target datasets the shipped configs name (Market-1501 bounding_box_train, DukeMTMC-reID
#: bounding_box_train, MSMT17 list_train + list_val as MMT): the N of a real round's clustering
TARGET_SIZES = {"Market1501": 12936, "DukeMTMC": 16522, "MSMT17UDA": 32621}


# ------------------------------------------------------------------------------------------- args
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true",
                   help="reduced CPU version for CI: " + ", ".join(f"{k}={v}" for k, v in SMALL.items()))
    p.add_argument("--device", default=None, help="cuda | cpu (default: cuda if available)")
    p.add_argument("--num-images", type=int, default=None, help="N target images (default 12,936, Market-1501's train)")
    p.add_argument("--depth", default=None, choices=sorted(DEPTH_DIM), help="ResNet depth (default 50x)")
    p.add_argument("--size", default=None, help="input H x W (default 256x128)")
    p.add_argument("--batch", type=int, default=None, help="SOLVER.IMS_PER_BATCH (default 64 = 16 ids x 4)")
    p.add_argument("--iters", type=int, default=None, help="timed training iterations (default 20)")
    p.add_argument("--warmup", type=int, default=None, help="untimed iterations first (default 3)")
    p.add_argument("--amp", dest="amp", action="store_true", default=None, help="AMP (default on a GPU)")
    p.add_argument("--no-amp", dest="amp", action="store_false")
    p.add_argument("--extract-batch", type=int, default=None, help="INCLR.CLUSTER.BATCH_SIZE (default 128)")
    p.add_argument("--workers", type=int, default=None, help="DATALOADER.NUM_WORKERS (default: config's 8)")
    p.add_argument("--rounds", type=int, default=100, help="rounds of the projected schedule (paper: 100)")
    p.add_argument("--weights", default="", help="source model for both students (MODEL.WEIGHTS); default random")
    p.add_argument("--no-checkpoint", action="store_true", help="skip stage (d)")
    p.add_argument("--no-breakdown", action="store_true", help="skip the memory breakdown iteration")
    p.add_argument("--project-batch", type=int, default=64,
                   help="also project the iteration's peak to this batch, linear through the breakdown at "
                        "--batch and at half of it (default 64)")
    p.add_argument("--breakdown-bf16", action="store_true",
                   help="CPU only: run the breakdown iteration under CPU autocast to bfloat16, a stand-in "
                        "for CUDA AMP (2-byte activations like float16)")
    p.add_argument("--data-root", default=None,
                   help="where the rendered images are cached (default $FASTREID_DATASETS or ./datasets)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="also write the figures to this JSON file")
    p.add_argument("--config-file", default="",
                   help="a real config (e.g. configs/INCLR/duke2market.yml) instead of configs/Base-INCLR.yml: its "
                        "weights are replaced by random ones, and stage (e) clusters synthetic features at --cluster-n")
    p.add_argument("--cluster-n", type=int, default=None,
                   help="(e) N of the full-scale clustering (default with --config-file: the config's target train "
                        "set, " + ", ".join(f"{k} {v:,}" for k, v in TARGET_SIZES.items()) + "); 0 skips (e)")
    p.add_argument("--cluster-dim", type=int, default=None,
                   help="(e) feature dimension (default MODEL.BACKBONE.FEAT_DIM)")
    p.add_argument("--summarize", nargs="+", default=None, metavar="JSON",
                   help="instead of measuring: one markdown table row per --json file written before (label=FILE)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = p.parse_args(argv)
    if args.summarize:
        return args
    base = dict(device="cuda" if torch.cuda.is_available() else "cpu", num_images=12936, depth="50x",
                size="256x128", batch=64, iters=20, warmup=3, extract_batch=128, workers=None)
    if args.small:
        base.update(SMALL)
    for k, v in base.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.amp is None:
        args.amp = args.device.startswith("cuda")
    return args


# ------------------------------------------------------------------------------------------- memory
class StageMemory:
    """Peak process RSS of a stage (high-water mark reset at its start) and, on CUDA, peak
    allocated/reserved device memory of the stage."""

    def __init__(self, device: torch.device):
        self.device = device
        self.rows: Dict[str, Dict[str, float]] = {}

    def begin(self) -> None:
        reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def end(self, name: str) -> None:
        row = {"peak_rss_mib": status_mib("VmHWM"), "rss_mib": status_mib("VmRSS")}
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            row["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(self.device) / MIB
            row["cuda_max_reserved_mib"] = torch.cuda.max_memory_reserved(self.device) / MIB
        self.rows[name] = row

    @contextlib.contextmanager
    def stage(self, name: str):
        self.begin()
        yield
        self.end(name)


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of live tensor storages: ``existing`` tensors (counted once, as ``baseline``) plus every
    storage an operator allocates while active, until it is freed; the peak, and the phase it falls
    in. Outputs that alias an input (in-place ops, views) allocate nothing and are not counted.
    Device-independent accounting of what CUDA's caching allocator reports as max_memory_allocated
    (less its 512-byte rounding and library workspaces such as cuDNN's)."""

    def __init__(self, existing=(), param_ptrs=frozenset()):
        super().__init__()
        self.param_ptrs = param_ptrs
        self.cast_ptrs: set = set()  # storages of dtype casts of parameters (autocast's weight copies)
        self.live: Dict[int, int] = {}
        self.known: "weakref.WeakSet" = weakref.WeakSet()
        self.baseline = 0
        for t in existing:
            st = t.untyped_storage()
            if st not in self.known:
                self.known.add(st)
                self.baseline += st.nbytes()
        self.current = self.peak = self.baseline
        self.phase = "forward"
        self.peak_phase = self.phase
        self.phase_peaks: Dict[str, int] = {}

    def _free(self, key: int, ptr: int) -> None:
        self.current -= self.live.pop(key, 0)
        self.cast_ptrs.discard(ptr)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        returns = func._schema.returns
        flat = tree_flatten(out)[0]
        for i, t in enumerate(flat):
            if not isinstance(t, torch.Tensor):
                continue
            if len(returns) == len(flat) and returns[i].alias_info is not None:
                continue  # in-place / out= / view: the input's storage
            st = t.untyped_storage()
            if st in self.known:
                continue
            try:
                self.known.add(st)
                weakref.finalize(st, self._free, id(st), st.data_ptr())
            except TypeError:  # no weak-referenceable Python storage object: not tracked
                continue
            self.live[id(st)] = st.nbytes()
            self.current += st.nbytes()
            if func is torch.ops.aten._to_copy.default and isinstance(args[0], torch.Tensor) \
                    and args[0].untyped_storage().data_ptr() in self.param_ptrs:
                self.cast_ptrs.add(st.data_ptr())
            phase = "backward" if torch._C._current_graph_task_id() != -1 else self.phase
            if self.current > self.phase_peaks.get(phase, 0):
                self.phase_peaks[phase] = self.current
            if self.current > self.peak:
                self.peak, self.peak_phase = self.current, phase
        return out


def _storage_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if t is None:
            continue
        st = t.untyped_storage()
        if st.data_ptr() in seen:
            continue
        seen.add(st.data_ptr())
        total += st.nbytes()
    return total


NON_BATCH_PHASES = ("optimizer step", "EMA update")


def memory_breakdown(model, optimizer, param_wrapper, simple, ema, it: int, take: int,
                     autocast_bf16: bool = False) -> Dict[str, Any]:
    """One more training iteration (not timed, on the first ``take`` images of the loader's next
    batch) with every tensor counted. ``autocast_bf16``: the model's forward under CPU autocast to
    bfloat16, as FastReID's AMPTrainer wraps it in CUDA autocast to float16 (2-byte activations and
    weight casts alike): a stand-in for AMP where there is no GPU."""
    params = list(model.parameters())
    buffers = list(model.buffers())
    grads = [p.grad for p in params if p.grad is not None]
    if param_wrapper is not None and hasattr(param_wrapper, "_grad_buffer"):
        grads = list(param_wrapper._grad_buffer)  # FastReID's contiguous gradient buffer
    opt_state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    heads_rows = 0
    for name in ("student1", "student2", "teacher1", "teacher2"):
        net = getattr(model, name, None)
        if net is not None and hasattr(net.heads, "classifier_weights"):
            heads_rows += sum(w.numel() * w.element_size() for w in net.heads.classifier_weights())
    out: Dict[str, Any] = {
        "params_bytes": _storage_bytes(params), "classifier_rows_bytes": heads_rows,
        "buffers_bytes": _storage_bytes(buffers), "grads_bytes": _storage_bytes(grads),
        "optimizer_state_bytes": _storage_bytes(opt_state),
    }
    static = sum(out[k] for k in ("params_bytes", "buffers_bytes", "grads_bytes", "optimizer_state_bytes"))

    param_ptrs = {t.untyped_storage().data_ptr() for t in params + buffers + grads}
    tracker = LiveTensorBytes(existing=params + buffers + grads + opt_state, param_ptrs=param_ptrs)
    saved: Dict[int, int] = {}
    saved_casts: Dict[int, int] = {}
    batch_bytes: Dict[str, int] = {}

    def pack(t):
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr not in param_ptrs:
            (saved_casts if ptr in tracker.cast_ptrs else saved)[ptr] = st.nbytes()
        return t

    inner = simple._data_loader_iter

    class _Take:
        def __next__(self):
            data = next(inner)
            b = len(data["targets"])
            data = {k: (v[:take].clone() if torch.is_tensor(v) and v.dim() and len(v) == b
                        else v[:take] if isinstance(v, list) and len(v) == b else v) for k, v in data.items()}
            for k in ("images", "images2"):
                if k in data and torch.is_tensor(data[k]):
                    batch_bytes[k] = data[k].untyped_storage().nbytes()
            return data

    simple._data_loader_iter = _Take()
    handles = [optimizer.register_step_pre_hook(lambda *a: setattr(tracker, "phase", "optimizer step"))]
    for name in ("student1", "student2", "teacher1", "teacher2"):
        net = getattr(model, name, None)
        if net is not None:
            handles.append(net.register_forward_pre_hook(
                lambda *a, n=name: setattr(tracker, "phase", f"forward of {n}")))
            handles.append(net.register_forward_hook(
                lambda *a, n=name: setattr(tracker, "phase", f"after forward of {n} (losses)")))
    if autocast_bf16:
        forward = model.forward

        def forward_bf16(*a, **k):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return forward(*a, **k)

        model.forward = forward_bf16
    try:
        simple.iter = it
        with tracker, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            simple.run_step()
            tracker.phase = "EMA update"
            ema.trainer.iter = it
            ema.after_step()
    finally:
        for h in handles:
            h.remove()
        simple._data_loader_iter = inner
        if autocast_bf16:
            del model.forward
    fb = [v for k, v in tracker.phase_peaks.items() if k not in NON_BATCH_PHASES]
    out.update(saved_bytes=sum(saved.values()), saved_cast_bytes=sum(saved_casts.values()),
               batch_bytes=sum(batch_bytes.values()), peak_live_bytes=tracker.peak,
               peak_phase=tracker.peak_phase, static_bytes=static, phase_peaks=dict(tracker.phase_peaks),
               fwd_bwd_peak_bytes=max(fb) if fb else 0,
               step_peak_bytes=max([v for k, v in tracker.phase_peaks.items() if k in NON_BATCH_PHASES] or [0]),
               autocast_bf16=autocast_bf16, batch_images=take)
    return out


# ------------------------------------------------------------------------------------------- data
class TimedIterator:
    """Wraps the loader iterator; records the seconds each ``next`` waited."""

    def __init__(self, it):
        self.it, self.waits = it, []

    def __next__(self):
        t0 = time.perf_counter()
        data = next(self.it)
        self.waits.append(time.perf_counter() - t0)
        return data


def use_rendered_identities(model, state, hook, feats: Dict[str, torch.Tensor]) -> int:
    """Fallback when the clustering is degenerate: the rendered identities become this epoch's
    pseudo labels (cluster centroids of the extracted features into the classifiers), as the hook
    would have installed them. Returns K."""
    import torch.nn.functional as F

    labels = torch.as_tensor(hook.true_ids, dtype=torch.int64)
    k = int(labels.max()) + 1
    hook.ensure_rows(k)
    centroids = {name: F.normalize(torch.zeros(k, f.shape[1]).index_add_(0, labels, f.float()), dim=1)
                 for name, f in feats.items()}
    model.set_pseudo_classes(k, centroids)
    state.labels, state.num_classes, state.cluster_epoch, state.skip_epoch = labels, k, 0, False
    parts = [n for n in feats if n.startswith("part")]
    state.agreement = torch.ones(len(labels), len(parts)) if parts else None
    return k


# ------------------------------------------------------------------------------------------- main
def build_cfg(args):
    from inclr_fastreid.config import setup_cfg

    h, w = (int(v) for v in args.size.lower().split("x"))
    opts = ["MODEL.DEVICE", args.device, "MODEL.BACKBONE.DEPTH", args.depth,
            "MODEL.BACKBONE.FEAT_DIM", str(DEPTH_DIM[args.depth]), "MODEL.BACKBONE.PRETRAIN", "False",
            "INPUT.SIZE_TRAIN", f"[{h},{w}]", "INPUT.SIZE_TEST", f"[{h},{w}]",
            "SOLVER.IMS_PER_BATCH", str(args.batch), "SOLVER.AMP.ENABLED", str(bool(args.amp)),
            "INCLR.CLUSTER.ENABLED", "True", "INCLR.CLUSTER.BATCH_SIZE", str(args.extract_batch),
            "INCLR.SEED", str(args.seed), "OUTPUT_DIR", "", "MODEL.WEIGHTS", args.weights,
            "INCLR.CLUSTER.PERIOD", "2"]  # one clustering per 2 epochs: see use_rendered_identities
    if args.workers is not None:
        opts += ["DATALOADER.NUM_WORKERS", str(args.workers)]
    if h < 256:
        opts += ["INPUT.PADDING.SIZE", str(max(1, round(10 * h / 256)))]
    if args.config_file:  # a real config names pretrained source models that need not exist here: random weights
        opts += ["INCLR.WEIGHTS2", ""]
    path = args.config_file or os.path.join(ROOT, "configs", "Base-INCLR.yml")
    if args.config_file and not os.path.exists(path):
        path = os.path.join(ROOT, args.config_file)
    return setup_cfg(path, opts + list(args.opts))


def full_scale_clustering(cfg, n: int, dim: int, seed: int, mem: "StageMemory") -> Dict[str, Any]:
    """(e) One round's clustering exactly as the config sets it (cluster_params_from_cfg) on synthetic clustered
    features at full N (inclr_fastreid/benchmarking/features.py: ~N/17 identities, 6 cameras, D ``dim``), global + the
    config's parts: the seconds per space and of its kNN searches, K, and the peak RSS of the stage."""
    from inclr_fastreid.benchmarking.features import synthetic_camids, synthetic_features
    from inclr_fastreid.pseudo_labels import cluster_params_from_cfg, generate_pseudo_labels

    params = cluster_params_from_cfg(cfg)
    parts = int(cfg.MODEL.HEADS.NUM_PARTS)
    feats = [synthetic_features(n, dim, s, seed) for s in range(1 + parts)]
    camids = synthetic_camids(n, seed)
    mem.begin()
    t0 = time.perf_counter()
    res = generate_pseudo_labels(feats[0], feats[1:], params, camids=camids)
    wall = time.perf_counter() - t0
    mem.end("full_cluster")
    t = res.timings
    spaces = ["global"] + [f"part{i + 1}" for i in range(parts)]
    per_space = {s: sum(v for k, v in t.items() if k.endswith("_" + s)) for s in spaces}
    knn = {s: t[f"knn_{s}"] for s in spaces if f"knn_{s}" in t}
    shared = {k: v for k, v in t.items() if k != "total" and not any(k.endswith("_" + s) for s in spaces)}
    return {"n": n, "dim": dim, "method": params.method, "lgmr": bool(params.lgmr_enabled),
            "agreement": params.agreement, "num_clusters": int(res.num_classes), "outliers": int(res.num_outliers),
            "wall_s": wall, "total_s": t["total"], "per_space_s": per_space, "knn_s": knn,
            "knn_total_s": sum(knn.values()), "shared_s": shared, "timings": t,
            "ratio": t["total"] / sum(knn.values()), "peak_rss_mib": mem.rows["full_cluster"]["peak_rss_mib"]}


def print_full_scale(f: Dict[str, Any], config_file: str) -> None:
    """The table of stage (e)."""
    print(f"\n(e) full-scale clustering, {config_file or 'Base-INCLR.yml'}: N={f['n']:,} D={f['dim']} "
          f"method={f['method']} LGMR={f['lgmr']} ({f['agreement']}), K={f['num_clusters']} "
          f"outliers={f['outliers']}")
    print(f"  {'space':<10}{'seconds':>10}{'of it kNN':>12}")
    for sp_name, v in f["per_space_s"].items():
        print(f"  {sp_name:<10}{v:>10.2f}{f['knn_s'].get(sp_name, 0.0):>12.2f}")
    for k, v in f["shared_s"].items():
        print(f"  {k:<10}{v:>10.2f}")
    print(f"  clustering {f['total_s']:.2f} s = {f['ratio']:.2f} x its {len(f['knn_s'])} kNN searches "
          f"({f['knn_total_s']:.2f} s); peak RSS {f['peak_rss_mib']:.0f} MiB", flush=True)


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in a (nested) state dict."""
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def summarize(specs: List[str]) -> None:
    """Markdown rows of stage (e), classifier rows, checkpoint and schedule disk from --json files (label=FILE)."""
    print("| run | config | N | K | clustering s | kNN s (searches) | ratio | per space s (global / parts) "
          "| peak RSS MiB | rows | state + optimizer GiB | schedule disk GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for spec in specs:
        label, path = spec.split("=", 1) if "=" in spec else ("", spec)
        with open(path) as f:
            r = json.load(f)
        e = r["full_scale_clustering"]
        cfg = os.path.basename(r["args"]["config_file"])
        spaces = " / ".join(f"{v:.1f}" for v in e["per_space_s"].values())
        state = (r["state_bytes"]["model"] + r["state_bytes"]["optimizer"]) / GIB
        print(f"| {label} | {cfg} | {e['n']:,} | {e['num_clusters']} | {e['total_s']:.1f} | {e['knn_total_s']:.1f} "
              f"({len(e['knn_s'])}) | {e['ratio']:.2f} | {spaces} | {e['peak_rss_mib']:.0f} | {r['classifier_rows']:,} "
              f"| {state:.3f} | {r['schedule_disk_bytes'] / GIB:.2f} |")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.summarize:
        summarize(args.summarize)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.amp and not args.device.startswith("cuda"):
        raise SystemExit("--amp needs a CUDA device (FastReID's AMPTrainer); use --no-amp on the CPU")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda but CUDA is not available")

    t_setup = time.perf_counter()
    import inclr_fastreid  # noqa: F401  (host compat + registries)
    import inclr_fastreid.modeling  # noqa: F401
    from fastreid.modeling import build_model
    from fastreid.utils.events import EventStorage

    from inclr_fastreid.engine import pseudo_label_hook
    from inclr_fastreid.engine.checkpoint import MatchingCheckpointer
    from inclr_fastreid.engine.ema_hook import EMAHook
    from inclr_fastreid.engine.loader import close_loader
    from inclr_fastreid.engine.pseudo_label_hook import PseudoLabelHook
    from inclr_fastreid.engine.state import PseudoLabelState
    from inclr_fastreid.engine.finite_loss import build_step_trainer
    from inclr_fastreid.engine.trainer import INCLRTrainer
    from inclr_fastreid.pseudo_labels.jaccard import default_num_threads

    cfg = build_cfg(args)
    device = torch.device(cfg.MODEL.DEVICE)
    torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)  # as FastReID's default_setup does in training
    root = args.data_root or os.getenv("FASTREID_DATASETS", "datasets")
    t0 = time.perf_counter()
    items = rendered_items(args.num_images, root, args.seed)
    render_s = time.perf_counter() - t0
    names = tuple(cfg.DATASETS.NAMES)
    if args.cluster_n is None:
        args.cluster_n = TARGET_SIZES.get(names[0], 0) if args.config_file and names else 0
    # the classifier rows / per-sample buffers of a real run: the trainer's own sizing at the full target N
    cfg = INCLRTrainer.scale_for_adaptation(cfg, args.cluster_n or len(items))
    full_cfg = cfg
    if args.cluster_n:  # (e) clusters as the config says; the sampled round (a)-(d) clusters only len(items) images:
        cfg = cfg.clone()
        cfg.defrost()
        if cfg.INCLR.CLUSTER.METHOD == "kmeans":  # a K they can hold
            cfg.INCLR.CLUSTER.NUM_CLUSTERS = min(int(cfg.INCLR.CLUSTER.NUM_CLUSTERS), max(2, len(items) // 4))
        if cfg.INCLR.CLUSTER.EPS_RULE == "mmt":  # MMT's rho of a few dozen random-weight images can give eps 0
            cfg.INCLR.CLUSTER.EPS_RULE = "fixed"
        cfg.freeze()
    mem = StageMemory(device)
    full = None
    if args.cluster_n:  # (e) first, before the model exists: its peak RSS is the clustering's own
        dim = args.cluster_dim or int(full_cfg.MODEL.BACKBONE.FEAT_DIM)
        print(f"(e) clustering {args.cluster_n:,} synthetic clustered images, D={dim}, "
              f"{1 + int(full_cfg.MODEL.HEADS.NUM_PARTS)} spaces, as {args.config_file or 'Base-INCLR.yml'} "
              "sets it ...", flush=True)
        full = full_scale_clustering(full_cfg, args.cluster_n, dim, args.seed, mem)
        print_full_scale(full, args.config_file)
    torch.manual_seed(args.seed)
    model = build_model(full_cfg)
    if args.weights:
        model.load_pretrained(args.weights, cfg.INCLR.WEIGHTS2)
    optimizer, param_wrapper = INCLRTrainer.build_optimizer(cfg, model)
    from inclr_fastreid.data.pseudo_dataset import NoPseudoLabelsLoader

    simple = build_step_trainer(cfg, model, NoPseudoLabelsLoader("no pseudo labels yet"), optimizer, param_wrapper)
    storage = EventStorage(0)
    ns = types.SimpleNamespace(model=model, epoch=0, iter=0, storage=storage, _trainer=simple, skip_steps=False)
    state = PseudoLabelState()
    from inclr_fastreid.modeling.interface import as_pseudo_label_model
    from inclr_fastreid.modeling.pseudo_classes import rows_for_clusters

    def ensure_rows(k: int) -> None:
        """Grow the classifiers for K clusters as INCLRTrainer.ensure_classifier_rows does."""
        if int(k) > as_pseudo_label_model(model).classifier_rows():
            from inclr_fastreid.engine.rows import resize_model_rows

            resize_model_rows(model, rows_for_clusters(k), optimizer)

    if full is not None:  # the rows a real round at full N ends with: its clusters (k-means: K; DBSCAN: found)
        ensure_rows(full["num_clusters"])
    hook = PseudoLabelHook(cfg, items, state, ensure_rows=ensure_rows)
    hook.trainer = ns
    hook.before_train()
    ema = EMAHook(cfg.INCLR.EMA_MOMENTUM)
    ema.trainer = ns
    setup_s = time.perf_counter() - t_setup - (full["wall_s"] if full else 0.0)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times: Dict[str, float] = {}
    extract_calls: List[float] = []
    extracted: List[Dict[str, torch.Tensor]] = []
    orig_extract = pseudo_label_hook.extract_features

    def timed_extract(m, items_, cfg_):
        mem.begin()
        t = time.perf_counter()
        out = orig_extract(m, items_, cfg_)
        sync()
        extract_calls.append(time.perf_counter() - t)
        extracted[:] = [out]
        mem.end("extract")
        mem.begin()  # the clustering's own peak from here to the end of before_epoch
        return out

    # The hook calls engine.features.extract_features through its module's name: time that call.
    pseudo_label_hook.extract_features = timed_extract

    dev_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"cpu ({torch.get_num_threads()} torch threads)")
    print(f"device={dev_name} N={len(items)} depth={cfg.MODEL.BACKBONE.DEPTH} size={args.size} "
          f"batch={cfg.SOLVER.IMS_PER_BATCH} "
          f"amp={bool(cfg.SOLVER.AMP.ENABLED)} extract_batch={cfg.INCLR.CLUSTER.BATCH_SIZE} "
          f"workers={cfg.DATALOADER.NUM_WORKERS} classifier_rows={cfg.MODEL.HEADS.NUM_CLASSES} "
          f"clustering_threads={default_num_threads()} iters={args.iters} warmup={args.warmup}")
    print(f"setup (not part of a round): {setup_s:.1f} s, of which rendering/reading {len(items)} images "
          f"{render_s:.1f} s")

    with EventStorage(0) as storage:
        ns.storage = storage
        # (a) + (b): the hook's before_epoch (extraction is timed inside it)
        sync()
        t = time.perf_counter()
        hook.before_epoch()  # close the old loader, reseed, extract, cluster, install the loader
        sync()
        before_epoch_s = time.perf_counter() - t
        mem.end("cluster")
        times["extract"] = extract_calls[-1]
        times["cluster"] = before_epoch_s - times["extract"]
        rec = state.history[-1]
        print(f"clustering: K={rec['num_clusters']} (before LGMR {rec['num_clusters_before_lgmr']}), "
              f"outliers {rec['num_outliers']}/{rec['num_samples']}, hook's own timing: extract "
              f"{rec['extract_seconds']} s, cluster {rec['cluster_seconds']} s")
        if ns.skip_steps or state.labels is None or state.num_classes < 2:
            k = use_rendered_identities(model, state, hook, extracted[-1])
            print(f"  -> fewer than 2 clusters (random weights?): training on the rendered identities as "
                  f"pseudo labels instead (K={k}); the clustering was timed all the same")
            ns.epoch = 1  # INCLR.CLUSTER.PERIOD 2: before_epoch only installs the loader for these labels
            hook.before_epoch()

        # (c) training iterations
        timed = TimedIterator(simple._data_loader_iter)
        simple._data_loader_iter = timed
        iter_s: List[float] = []
        losses: List[Dict[str, float]] = []
        with mem.stage("train"):
            for i in range(args.warmup + args.iters):
                simple.iter = ns.iter = i
                sync()
                t = time.perf_counter()
                simple.run_step()
                ema.after_step()
                sync()
                if i >= args.warmup:
                    iter_s.append(time.perf_counter() - t)
                losses.append({k: float(v[0]) for k, v in storage.latest().items() if k.startswith("loss_")})
        waits = timed.waits[args.warmup:]
        simple._data_loader_iter = timed.it
        mean_iter = statistics.fmean(iter_s)
        ipr = int(cfg.INCLR.ITERS_PER_EPOCH)
        times["train"] = mean_iter * ipr

        breakdown, half = None, None
        if not args.no_breakdown:
            bsz, inst = int(cfg.SOLVER.IMS_PER_BATCH), int(cfg.DATALOADER.NUM_INSTANCE)
            bf16 = args.breakdown_bf16 and device.type == "cpu"
            it = args.warmup + args.iters
            breakdown = memory_breakdown(model, optimizer, param_wrapper, simple, ema, it, bsz, bf16)
            if bsz >= 2 * inst:  # a second point, half the batch, for the line through both
                half = memory_breakdown(model, optimizer, param_wrapper, simple, ema, it + 1,
                                        bsz // (2 * inst) * inst, bf16)

        # (d) checkpoint
        ckpt_bytes = 0
        if not args.no_checkpoint:
            tmp = tempfile.mkdtemp(prefix="bench_round_ckpt_", dir=os.getenv("TMPDIR"))
            try:
                ck = MatchingCheckpointer(model, tmp, save_to_disk=True, optimizer=optimizer, pseudo_labels=state)
                with mem.stage("checkpoint"):
                    t = time.perf_counter()
                    ck.save("round")
                    times["checkpoint"] = time.perf_counter() - t
                ckpt_bytes = os.path.getsize(os.path.join(tmp, "round.pth"))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        state_bytes = {"model": tensor_bytes(model.state_dict()), "optimizer": tensor_bytes(optimizer.state_dict())}
        close_loader(simple.data_loader)

    # ---------------------------------------------------------------------------- report
    round_s = sum(times.values())
    labels = {"extract": "(a) extract, 2 teachers", "cluster": "(b) cluster 4 spaces, LGMR, loader",
              "train": f"(c) train {ipr} iters (extrapolated)", "checkpoint": "(d) checkpoint"}
    print(f"\n{'stage':<40}{'seconds':>10}{'share':>9}{'peak RSS MiB':>14}" +
          (f"{'CUDA alloc MiB':>16}{'reserved MiB':>14}" if device.type == "cuda" else ""))
    for k, v in times.items():
        m = mem.rows.get(k, {})
        extra = ""
        if device.type == "cuda":
            nan = float("nan")
            extra = f"{m.get('cuda_max_allocated_mib', nan):>16.0f}{m.get('cuda_max_reserved_mib', nan):>14.0f}"
        rss = m.get("peak_rss_mib", float("nan"))
        print(f"{labels[k]:<40}{v:>10.2f}{100 * v / round_s:>8.1f}%{rss:>14.0f}{extra}")
    print(f"{'round':<40}{round_s:>10.2f}{100.0:>8.1f}%")
    print(f"(a)+(b): the hook's before_epoch, (b) = its time less (a)'s; (c) is {ipr} x the mean of "
          f"{len(iter_s)} measured iterations ({args.warmup} warmup excluded): mean {1e3 * mean_iter:.1f} ms, "
          f"median {1e3 * statistics.median(iter_s):.1f} ms, "
          f"min-max [{1e3 * min(iter_s):.1f}, {1e3 * max(iter_s):.1f}] ms")
    wait_share = 100 * sum(waits) / sum(iter_s)
    print(f"data wait: {wait_share:.1f}% of training time (median {1e3 * statistics.median(waits):.1f} ms per "
          f"iteration, {cfg.DATALOADER.NUM_WORKERS} loader workers)")
    total = args.rounds * round_s
    print(f"projection: {args.rounds} rounds x {round_s:.2f} s = {total:.0f} s = {total / 3600:.2f} h "
          f"(evaluation every {cfg.TEST.EVAL_PERIOD} rounds not included)")
    if ckpt_bytes:
        print(f"checkpoint size: {ckpt_bytes / MIB:.0f} MiB per round")
    from inclr_fastreid.modeling.interface import as_pseudo_label_model

    rows = as_pseudo_label_model(model).classifier_rows()
    keep = int(full_cfg.INCLR.KEEP_CHECKPOINTS)  # round checkpoints a run keeps
    per_ckpt = ckpt_bytes or (state_bytes["model"] + state_bytes["optimizer"])
    # + model_final (a full checkpoint) + model_best (the network only: engine/checkpoint.py RoundCheckpointer)
    disk = (keep + 1) * per_ckpt + state_bytes["model"]
    print(f"classifier rows: {rows:,} (INCLRTrainer.scale_for_adaptation's MODEL.HEADS.NUM_CLASSES "
          f"{int(full_cfg.MODEL.HEADS.NUM_CLASSES):,}, grown to the round's clusters as the trainer grows them); "
          f"state dict {state_bytes['model'] / GIB:.3f} GiB + optimizer state "
          f"{state_bytes['optimizer'] / GIB:.3f} GiB = {(state_bytes['model'] + state_bytes['optimizer']) / GIB:.3f} GiB")
    print(f"disk for the schedule: ({keep} kept round checkpoints (INCLR.KEEP_CHECKPOINTS) + model_final) x "
          f"{per_ckpt / GIB:.3f} GiB + model_best (network only) {state_bytes['model'] / GIB:.3f} GiB = "
          f"{disk / GIB:.2f} GiB, whatever the number of rounds")
    if full is not None:
        print_full_scale(full, args.config_file)
    if breakdown is not None:
        b = breakdown
        how = ", under CPU autocast to bfloat16 (stand-in for AMP)" if b["autocast_bf16"] else ""
        print(f"\nmemory of one training iteration (live tensor bytes, counted from the tensors{how}):")
        rows = [("parameters, 4 networks", b["params_bytes"]),
                ("  of which classifier rows", b["classifier_rows_bytes"]),
                ("buffers (BN stats, IGMO centroids, ...)", b["buffers_bytes"]),
                ("gradient buffer, 2 students", b["grads_bytes"]),
                ("Adam state, 2 students", b["optimizer_state_bytes"]),
                ("= kept between iterations", b["static_bytes"]),
                ("input batch, 2 views", b["batch_bytes"]),
                ("saved for backward, 2 students: activations", b["saved_bytes"]),
                ("saved for backward: weight casts (AMP)", b["saved_cast_bytes"])]
        for name, v in rows:
            print(f"  {name:<46}{v / MIB:>10.1f} MiB")
        per_image = b["saved_bytes"] / b["batch_images"] / MIB
        print(f"  {'activations saved for backward per image':<46}{per_image:>10.2f} MiB")
        print(f"  {'peak of live tensors':<46}{b['peak_live_bytes'] / MIB:>10.1f} MiB  (during {b['peak_phase']})")
        for phase, v in sorted(b["phase_peaks"].items(), key=lambda kv: -kv[1]):
            print(f"    {'peak during ' + phase:<44}{v / MIB:>10.1f} MiB")
        if device.type == "cuda":
            cuda_peak = mem.rows["train"]["cuda_max_allocated_mib"]
            print(f"  {'CUDA max_memory_allocated, stage (c)':<46}{cuda_peak:>10.1f} MiB")
        if half is not None:
            b0, b1 = half["batch_images"], b["batch_images"]
            slope = (b["fwd_bwd_peak_bytes"] - half["fwd_bwd_peak_bytes"]) / (b1 - b0)
            fb = b["fwd_bwd_peak_bytes"] + slope * (args.project_batch - b1)
            proj = max(fb, b["step_peak_bytes"])
            breakdown["projection"] = {"batch": args.project_batch, "per_image_bytes": slope,
                                       "fwd_bwd_peak_bytes": fb, "peak_bytes": proj}
            print(f"  forward/backward peak at batch {b0}: {half['fwd_bwd_peak_bytes'] / MIB:.1f} MiB, at {b1}: "
                  f"{b['fwd_bwd_peak_bytes'] / MIB:.1f} MiB -> {slope / MIB:.2f} MiB per image")
            print(f"  projected peak at batch {args.project_batch} (linear in the batch; optimiser step "
                  f"{b['step_peak_bytes'] / MIB:.1f} MiB does not grow): {proj / MIB:.1f} MiB = {proj / GIB:.2f} GiB")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "times_s": times, "round_s": round_s, "projection_s": total,
                       "iter_s": iter_s, "data_wait_s": waits, "memory": mem.rows, "breakdown": breakdown,
                       "breakdown_half_batch": half,
                       "losses": losses, "clustering": rec, "checkpoint_bytes": ckpt_bytes,
                       "state_bytes": state_bytes, "classifier_rows": rows, "keep_checkpoints": keep,
                       "schedule_disk_bytes": disk, "full_scale_clustering": full}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
