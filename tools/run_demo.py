#!/usr/bin/env python
"""The embedded demo (README's main command): on the synthetic domain-shift benchmark, pretrain two
source models with different seeds (with the target's BN statistics, as MMT), then run the ablation
rows of the paper's Table III, each adapting student 1 / teacher 1 from the first source model and
student 2 / teacher 2 from the second (MMT --init-1 / --init-2), and the feature rows of Table II,
and print one results table (also written to OUTPUT_DIR/results.md and results.json).

Every stage is an ordinary ``tools/train_net.py`` call, logged to OUTPUT_DIR/<stage>/log.txt:

    python tools/run_demo.py                 # full demo (CPU, no download)
    python tools/run_demo.py --quick         # a first look: shorter schedules
    python tools/run_demo.py --reuse         # skip stages whose results already exist
    python tools/run_demo.py --seed 0        # INCLR.SEED 0 for every stage, 1 for the second source model
                                             # (default: drawn at random, a new one per stage)
    python tools/run_demo.py --reuse --rows mmt lgmr igmo inclr undetached baseline_uda   # two extra rows

All numbers are from the *synthetic* benchmark (docs/design.md §7), never a claim about real data.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from inclr_fastreid.io import atomic_write_text  # noqa: E402  (after the sys.path line)

TRAIN_NET = os.path.join(HERE, "train_net.py")
PRETRAIN_CFG = "configs/Pretrain/synthetic.yml"
ROWS: List[Tuple[str, str, str]] = [  # (name, stage dir, config)
    ("MMT baseline", "mmt", "configs/INCLR/ablation/synthetic_mmt.yml"),
    ("+LGMR", "lgmr", "configs/INCLR/ablation/synthetic_lgmr.yml"),
    ("+IGMO", "igmo", "configs/INCLR/ablation/synthetic_igmo.yml"),
    ("INCLR (LGMR+IGMO)", "inclr", "configs/INCLR/synthetic.yml"),
    # not in the default run (--rows ... to add them):
    ("INCLR, IGMO weight not detached (UNRN)", "undetached", "configs/INCLR/ablation/synthetic_undetached.yml"),
    ("Stock Baseline + PseudoLabelHook", "baseline_uda", "configs/UDA/synthetic_baseline.yml"),
]
DEFAULT_ROWS = ["mmt", "lgmr", "igmo", "inclr"]
FEATURES = ["global", "part1", "part2", "part3", "joint"]
QUICK_PRETRAIN = ["SOLVER.MAX_EPOCH", "4", "SOLVER.STEPS", "[3]", "TEST.EVAL_PERIOD", "4"]
QUICK_ADAPT = ["SOLVER.MAX_EPOCH", "2", "INCLR.ITERS_PER_EPOCH", "15"]


def _run(stage: str, args: List[str], out_dir: str) -> float:
    """One train_net call; its output goes to <out_dir>/train_net.out. Raises with the log's tail."""
    os.makedirs(out_dir, exist_ok=True)
    log_path = os.path.join(out_dir, "train_net.out")
    cmd = [sys.executable, TRAIN_NET] + args + ["OUTPUT_DIR", out_dir]
    print(f"[demo] {stage}: {' '.join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in cmd[1:])}",
          flush=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYTHONUNBUFFERED="1"))
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = "".join(f.readlines()[-30:])
        raise SystemExit(f"[demo] {stage} failed after {dt:.0f}s (log: {log_path}):\n{tail}")
    print(f"[demo] {stage}: done in {dt:.0f}s", flush=True)
    return dt


def _json(path: str) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _label_quality(stage_dir: str) -> Dict[str, Optional[float]]:
    """Final round's pseudo-label F-score / NMI (after LGMR) and the last credibility AUROC."""
    path = os.path.join(stage_dir, "pseudo_labels.jsonl")
    out: Dict[str, Optional[float]] = {"fscore": None, "nmi": None, "auroc": None, "clusters": None}
    if not os.path.isfile(path):
        return out
    with open(path) as f:
        rounds = [json.loads(line) for line in f if line.strip()]
    if not rounds:
        return out
    last = rounds[-1]
    out.update(fscore=last.get("pairwise_fscore_after_lgmr"), nmi=last.get("nmi_after_lgmr"),
               clusters=last.get("num_clusters"))
    aurocs = [r["credibility_auroc"] for r in rounds if r.get("credibility_auroc") is not None]
    out["auroc"] = aurocs[-1] if aurocs else None
    return out


def _fmt(v: Optional[float], scale: float = 1.0, nd: int = 1) -> str:
    return "–" if v is None else f"{v * scale:.{nd}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output-dir", default="output/demo")
    ap.add_argument("--quick", action="store_true", help="short schedules for a first look")
    ap.add_argument("--reuse", action="store_true", help="skip stages whose results already exist")
    ap.add_argument("--opts", nargs="*", default=[],
                    help="KEY VALUE overrides for every adaptation run, e.g. INCLR.CLUSTER.CAMERA_NORM True")
    ap.add_argument("--pretrained", nargs="+", default=[], metavar="PATH",
                    help="reuse these two source models (student 1, student 2) instead of pretraining, e.g. "
                         "output/demo/pretrain/model_final.pth output/demo/pretrain2/model_final.pth; one path "
                         "starts both students from it (the run logs a warning)")
    ap.add_argument("--seed", type=int, default=None,
                    help="INCLR.SEED N for every stage (N + 1 for the second source model): fixes initialisation "
                         "and sampling (default: random, as FastReID)")
    ap.add_argument("--rows", nargs="*", default=DEFAULT_ROWS, choices=[r[1] for r in ROWS],
                    help=f"rows to run (default: {' '.join(DEFAULT_ROWS)}; also undetached, baseline_uda)")
    args = ap.parse_args()
    if len(args.pretrained) > 2:
        ap.error("--pretrained takes one or two source models")
    seed = [] if args.seed is None else ["INCLR.SEED", str(args.seed)]
    seed2 = [] if args.seed is None else ["INCLR.SEED", str(args.seed + 1)]  # another seed for source model 2
    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)
    t_start = time.perf_counter()
    timings: Dict[str, float] = {}

    # 1. Two source pretrainings (SynthA, with SynthB's BN statistics) with different seeds, as MMT.
    if args.pretrained:
        weights = os.path.abspath(args.pretrained[0])
        weights2 = os.path.abspath(args.pretrained[-1])
    else:
        weights, weights2 = (os.path.join(out, d, "model_final.pth") for d in ("pretrain", "pretrain2"))
        for n, (stage, path, stage_seed) in enumerate((("pretrain", weights, seed), ("pretrain2", weights2, seed2)), 1):
            if not (args.reuse and os.path.isfile(path)):
                timings[stage] = _run(f"source pretraining {n} of 2 (SynthA)", ["--config-file", PRETRAIN_CFG]
                                      + (QUICK_PRETRAIN if args.quick else []) + stage_seed, os.path.dirname(path))
    # 2. Direct transfer row: the first source model's joint feature on the target.
    direct_dir = os.path.join(out, "direct")
    if not (args.reuse and _json(os.path.join(direct_dir, "eval_joint.json"))):
        timings["direct"] = _run("direct transfer (eval on SynthB)", ["--config-file", PRETRAIN_CFG, "--eval-only",
                                 "MODEL.WEIGHTS", weights, "INCLR.TEST_FEATURE", "joint"] + seed, direct_dir)
    table = [("Direct transfer (source only)", _json(os.path.join(direct_dir, "eval_joint.json")), {})]

    # 3. Ablation rows (Table III): each adapts from the same two source models (the stock Baseline
    #    row has one network: the first).
    for name, stage, cfg in ROWS:
        if stage not in args.rows:
            continue
        d = os.path.join(out, stage)
        init = ["MODEL.WEIGHTS", weights] + (["INCLR.WEIGHTS2", weights2] if cfg.startswith("configs/INCLR/") else [])
        if not (args.reuse and _json(os.path.join(d, "final_results.json"))):
            timings[stage] = _run(f"adaptation: {name}", ["--config-file", cfg] + init
                                  + (QUICK_ADAPT if args.quick else []) + seed + args.opts, d)
        table.append((name, _json(os.path.join(d, "final_results.json")), _label_quality(d)))

    # 4. Feature rows (Table II) on the INCLR model.
    feat_rows = []
    inclr_dir = os.path.join(out, "inclr")
    if "inclr" in args.rows:
        model = os.path.join(inclr_dir, "model_final.pth")
        feat_dir = os.path.join(out, "features")
        for feat in FEATURES:
            res_path = os.path.join(feat_dir, f"eval_{feat}.json")
            if not (args.reuse and _json(res_path)):
                timings[f"eval_{feat}"] = _run(f"INCLR features: {feat}", ["--config-file", "configs/INCLR/synthetic.yml",
                                               "--eval-only", "MODEL.WEIGHTS", model, "INCLR.TEST_FEATURE", feat]
                                               + seed + args.opts, feat_dir)
            feat_rows.append((feat, _json(res_path)))

    total = time.perf_counter() - t_start
    md = render_markdown(table, feat_rows, args, total)
    print("\n" + md)
    atomic_write_text(os.path.join(out, "results.md"), md)  # a kill never leaves half a table
    payload = {
        "benchmark": "synthetic (SynthA -> SynthB), docs/design.md §7",
        "quick": args.quick, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "seed": args.seed, "source_models": [weights, weights2], "wall_seconds": round(total, 1), "stage_seconds": {k: round(v, 1) for k, v in timings.items()},
        "rows": [{"method": n, "metrics": r, "pseudo_labels": q} for n, r, q in table],
        "features": [{"feature": f, "metrics": r} for f, r in feat_rows],
    }
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(payload, indent=2))
    if "inclr" in args.rows:
        subprocess.run([sys.executable, os.path.join(HERE, "plot_run.py"), inclr_dir,
                        "--direct", os.path.join(direct_dir, "eval_joint.json"), "--compare", *[os.path.join(out, s) for s in ("mmt", "lgmr", "igmo") if s in args.rows]],
                       cwd=ROOT, check=False)
    print(f"[demo] results: {os.path.join(out, 'results.md')}  plots: {os.path.join(inclr_dir, 'plots')}")


def _cmdline_extra(args) -> str:
    extra = ""
    if args.pretrained:
        extra += " --pretrained " + " ".join(args.pretrained)
    if args.seed is not None:
        extra += f" --seed {args.seed}"
    if args.rows != DEFAULT_ROWS:
        extra += " --rows " + " ".join(args.rows)
    if args.opts:
        extra += " --opts " + " ".join(args.opts)
    return extra


def render_markdown(table, feat_rows, args, total: float) -> str:
    import torch

    device = "GPU " + torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    lines = [
        f"### Synthetic benchmark SynthA → SynthB{' (quick mode)' if args.quick else ''}",
        "",
        f"`python tools/run_demo.py{' --quick' if args.quick else ''}{_cmdline_extra(args)}` on {device}, "
        f"{total / 60:.1f} min in all. "
        "Synthetic data: not a claim about Market/Duke/MSMT.",
        "",
        "| Method | mAP | R1 | R5 | R10 | pseudo-label F | NMI | credibility AUROC | clusters |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res, q in table:
        res = res or {}
        lines.append(f"| {name} | {_fmt(res.get('mAP'))} | {_fmt(res.get('Rank-1'))} | {_fmt(res.get('Rank-5'))} | "
                     f"{_fmt(res.get('Rank-10'))} | {_fmt(q.get('fscore'), 100)} | {_fmt(q.get('nmi'), 100)} | "
                     f"{_fmt(q.get('auroc'), 1, 3)} | {q.get('clusters') if q.get('clusters') is not None else '–'} |")
    if feat_rows:
        lines += ["", "Features at inference (Table II analogue, INCLR model, teacher T1):", "",
                  "| Feature | mAP | R1 |", "|---|---|---|"]
        for feat, res in feat_rows:
            res = res or {}
            lines.append(f"| {feat} | {_fmt(res.get('mAP'))} | {_fmt(res.get('Rank-1'))} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
