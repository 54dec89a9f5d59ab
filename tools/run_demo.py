#!/usr/bin/env python
"""The embedded demo (README's main command): on the synthetic domain-shift benchmark, pretrain two
source models with different seeds (with the target's BN statistics, as MMT), then run the ablation
rows of the paper's Table III (INCLR by default; --rows all for MMT global only, MMT with parts, +LGMR, +IGMO),
each adapting student 1 / teacher 1 from the first source model and
student 2 / teacher 2 from the second (MMT --init-1 / --init-2), and the feature rows of Table II,
and print one results table (also written to OUTPUT_DIR/results.md and results.json).

Every stage is an ordinary ``tools/train_net.py`` call, logged to OUTPUT_DIR/<stage>/log.txt:

    python tools/run_demo.py                 # full demo (CPU, no download)
    python tools/run_demo.py --quick         # a first look: shorter schedules
    python tools/run_demo.py --reuse         # skip stages whose results already exist
    python tools/run_demo.py --seed 0        # INCLR.SEED 0 for every stage, 1000 for the second source model
                                             # (default: drawn at random, a new one per stage)
    python tools/run_demo.py --rows all      # every ablation row of Table III (direct, MMT global only, MMT with
                                             # parts (global feature at test, joint), +LGMR, +IGMO, INCLR)
    python tools/run_demo.py --seeds 1 2 3 --rows all      # the README's multi-seed table: mean ± std
    python tools/run_demo.py --seeds 1 2 --changes         # the per-change table: INCLR with each part of
                                                           # the reference recipe undone alone

All numbers are from the *synthetic* benchmark (docs/design.md §7), never a claim about real data.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from inclr_fastreid.io import atomic_write_text

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)  # the checkout: the configs' relative paths and the stages' working directory
TRAIN_NET = os.path.join(HERE, "train_net.py")
PRETRAIN_CFG = "configs/Pretrain/synthetic.yml"
INCLR_CFG = "configs/INCLR/synthetic.yml"
MMT_CFG = "configs/INCLR/ablation/synthetic_mmt.yml"
MMT_GLOBAL = "MMT (global only, reference)"
ROWS: List[Tuple[str, str, str]] = [  # (name, stage dir, config)
    ("MMT baseline", "mmt", MMT_CFG),
    # The paper's Table III "Baseline": MMT as its reference code trains it, global features only; it clusters
    # at the eps and k1 the MMT row's rules chose in its first round (SCALE_FROM), so the two differ in the
    # part branches alone.
    (MMT_GLOBAL, "mmt_global", "configs/INCLR/ablation/synthetic_mmt_global.yml"),
    # The MMT row's own model evaluated on its global feature (EVAL_ROWS): no training.
    ("MMT with parts, global feature at test", "mmt_test_global", MMT_CFG),
    ("+LGMR", "lgmr", "configs/INCLR/ablation/synthetic_lgmr.yml"),
    ("+IGMO", "igmo", "configs/INCLR/ablation/synthetic_igmo.yml"),
    ("INCLR (LGMR+IGMO)", "inclr", "configs/INCLR/synthetic.yml"),
    # not in the default run (--rows ... to add them):
    ("INCLR, IGMO weight not detached (UNRN)", "undetached", "configs/INCLR/ablation/synthetic_undetached.yml"),
    ("Stock Baseline + PseudoLabelHook", "baseline_uda", "configs/UDA/synthetic_baseline.yml"),
]
ABLATION_ROWS = ["mmt", "mmt_global", "mmt_test_global", "lgmr", "igmo", "inclr"]
# `make demo`: one seed, both pretrainings, under 20 min on 2 cores; --rows all adds the MMT rows, +LGMR, +IGMO
DEFAULT_ROWS = ["inclr"]
# Rows that are an --eval-only of another row's model: stage -> (trained stage, INCLR.TEST_FEATURE)
EVAL_ROWS: Dict[str, Tuple[str, str]] = {"mmt_test_global": ("mmt", "global")}
# Rows that cluster at the eps and k1 another row's rules chose in its first round: stage -> that row's stage
SCALE_FROM: Dict[str, str] = {"mmt_global": "mmt"}


@dataclass(frozen=True)
class Change:
    """One part of the reference recipe (docs/results.md, the per-change table: items 1-6) undone alone.

    ``pretrain``: overrides of both source pretrainings (None: the shared source models);
    ``adapt``: overrides of the INCLR run; ``one_source``: both students start from source model 1."""

    key: str
    label: str
    pretrain: Optional[Tuple[str, ...]] = None
    adapt: Tuple[str, ...] = ()
    one_source: bool = False


LOW_RES = ("INPUT.SIZE_TRAIN", "[64,32]", "INPUT.SIZE_TEST", "[64,32]", "INPUT.PADDING.SIZE", "4")
CHANGES: List[Change] = [
    Change("one_source", "1. one source model for both students", one_source=True),
    Change("no_target_bn", "2. no target BN in source pretraining", pretrain=("INCLR.PRETRAIN.TARGET_BN", "False")),
    # Item 3 added the clustering readings; the synthetic default is now EPS_RULE auto with K1_RULE size on
    # camera-standardised features (docs/design.md §4.3.1-4.3.2), so these rows put back the references' fixed scale (k1 30) and
    # MMT-DBSCAN's rule (k1 20), each at its k1 as written.
    Change("fixed_eps", "3. the references' fixed scale: eps 0.6, k1 30 on raw features (SpCL / PPLR), not auto + "
           "K1_RULE size + CAMERA_NORM",
           adapt=("INCLR.CLUSTER.EPS_RULE", "fixed", "INCLR.CLUSTER.K1_RULE", "fixed",
                  "INCLR.CLUSTER.CAMERA_NORM", "False")),
    Change("mmt_eps", "3. the other DBSCAN reading: MMT-DBSCAN's eps rule (rho 1.6e-3, k1 20) on raw features",
           adapt=("INCLR.CLUSTER.EPS_RULE", "mmt", "INCLR.CLUSTER.K1", "20", "INCLR.CLUSTER.K1_RULE", "fixed",
                  "INCLR.CLUSTER.CAMERA_NORM", "False")),
    Change("lgmr_before_pplr", "4. LGMR before PPLR: mean agreement, MIN_AGREEMENT 0.1, AALS from round 0",
           adapt=("INCLR.LGMR.AGREEMENT", "mean", "INCLR.LGMR.MIN_AGREEMENT", "0.1", "INCLR.LGMR.AALS_EPOCH", "0")),
    Change("no_mmt_details", "5. no MMT details: camera-blind P×K, no label smoothing, students averaged",
           adapt=("INCLR.MMT.CAMERA_SAMPLER", "False", "INCLR.MMT.LABEL_SMOOTH", "0.0",
                  "INCLR.MMT.SUM_STUDENTS", "False")),
    Change("low_res", "6. parts of 2/1/1 rows: 64×32 input (pretraining and adaptation)",
           pretrain=LOW_RES, adapt=LOW_RES),
]
SECOND_SOURCE_OFFSET = 1000  # --seed N: source model 2 uses N + 1000, so --seeds 1 2 3 share no source model
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


def _label_quality(stage_dir: str) -> Dict[str, Any]:
    """Final round's pseudo-label F-score / NMI (after LGMR), the last credibility AUROC, and every
    round's F / NMI / clusters / outliers (for the per-round diagnosis)."""
    path = os.path.join(stage_dir, "pseudo_labels.jsonl")
    out: Dict[str, Any] = {"fscore": None, "nmi": None, "auroc": None, "clusters": None, "rounds": []}
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
    out["rounds"] = [{"epoch": r.get("epoch"), "fscore": r.get("pairwise_fscore_after_lgmr"),
                      "precision": r.get("pairwise_precision_after_lgmr"),
                      "recall": r.get("pairwise_recall_after_lgmr"), "nmi": r.get("nmi_after_lgmr"),
                      "clusters": r.get("num_clusters"), "outliers": r.get("num_outliers"), "eps": r.get("eps")}
                     for r in rounds]
    return out


def first_round_scale_opts(stage_dir: str) -> List[str]:
    """Overrides that cluster at the eps and k1 of ``stage_dir``'s first clustering round (its
    pseudo_labels.jsonl), with both rules fixed: the global-only MMT row has no part views for EPS_RULE
    auto, so it takes the scale the MMT row's rules chose for the same seed."""
    path = os.path.join(stage_dir, "pseudo_labels.jsonl")
    rounds = []
    if os.path.isfile(path):
        with open(path) as f:
            rounds = [json.loads(line) for line in f if line.strip()]
    first = rounds[0] if rounds else {}
    eps, k1 = first.get("eps"), first.get("k1")
    if eps is None or k1 is None:
        raise SystemExit(f"[demo] {path}: no eps / k1 recorded for the first clustering round (a DBSCAN run of "
                         f"{MMT_CFG} writes them); the global-only MMT row clusters at that scale.")
    return ["INCLR.CLUSTER.EPS_RULE", "fixed", "INCLR.CLUSTER.EPS", repr(float(eps)),
            "INCLR.CLUSTER.K1_RULE", "fixed", "INCLR.CLUSTER.K1", str(int(k1))]


def _fmt(v: Optional[float], scale: float = 1.0, nd: int = 1) -> str:
    return "–" if v is None else f"{v * scale:.{nd}f}"


def _seed_opts(seed: Optional[int], offset: int = 0) -> List[str]:
    return [] if seed is None else ["INCLR.SEED", str(seed + offset)]


def _pretrain_pair(out: str, suffix: str, extra: Sequence[str], seed: Optional[int], args,
                   timings: Dict[str, float]) -> Tuple[str, str]:
    """Two source pretrainings (SynthA, with SynthB's BN statistics) with different seeds, as MMT."""
    paths = []
    for n, (stage, offset) in enumerate((("pretrain", 0), ("pretrain2", SECOND_SOURCE_OFFSET)), 1):
        stage += suffix
        path = os.path.join(out, stage, "model_final.pth")
        if not (args.reuse and os.path.isfile(path)):
            timings[stage] = _run(f"source pretraining {n} of 2{suffix and ' (' + suffix[1:] + ')'} (SynthA)",
                                  ["--config-file", PRETRAIN_CFG] + (QUICK_PRETRAIN if args.quick else [])
                                  + list(extra) + _seed_opts(seed, offset), os.path.dirname(path))
        paths.append(path)
    return paths[0], paths[1]


def _adapt(out: str, stage: str, name: str, cfg: str, weights: str, weights2: Optional[str], extra: Sequence[str],
           seed: Optional[int], args, timings: Dict[str, float]) -> Tuple[Optional[dict], Dict[str, Any]]:
    d = os.path.join(out, stage)
    init = ["MODEL.WEIGHTS", weights] + (["INCLR.WEIGHTS2", weights2] if weights2 else [])
    if not (args.reuse and _json(os.path.join(d, "final_results.json"))):
        timings[stage] = _run(f"adaptation: {name}", ["--config-file", cfg] + init + (QUICK_ADAPT if args.quick else [])
                              + list(extra) + _seed_opts(seed) + args.opts, d)
    return _json(os.path.join(d, "final_results.json")), _label_quality(d)


def _selected_changes(args) -> List[Change]:
    """--changes: none (not given), every change (given without keys) or the named ones, in CHANGES' order."""
    if args.changes is None:
        return []
    return [c for c in CHANGES if not args.changes or c.key in args.changes]


def run_seed(out: str, seed: Optional[int], args) -> Dict[str, Any]:
    """Every stage of one demo run (one seed) into ``out``; returns its results (results.json's payload)."""
    os.makedirs(out, exist_ok=True)
    t_start = time.perf_counter()
    timings: Dict[str, float] = {}
    seed_opts = _seed_opts(seed)

    # 1. Two source models (student 1 / teacher 1 from the first, student 2 / teacher 2 from the second).
    if args.pretrained:
        weights, weights2 = os.path.abspath(args.pretrained[0]), os.path.abspath(args.pretrained[-1])
    else:
        weights, weights2 = _pretrain_pair(out, "", [], seed, args, timings)
    # 2. Direct transfer row: the first source model's joint feature on the target.
    direct_dir = os.path.join(out, "direct")
    if not (args.reuse and _json(os.path.join(direct_dir, "eval_joint.json"))):
        timings["direct"] = _run("direct transfer (eval on SynthB)", ["--config-file", PRETRAIN_CFG, "--eval-only",
                                 "MODEL.WEIGHTS", weights, "INCLR.TEST_FEATURE", "joint"] + seed_opts, direct_dir)
    table = [("Direct transfer (source only)", _json(os.path.join(direct_dir, "eval_joint.json")), {})]

    # 3. Ablation rows (Table III): each adapts from the same two source models (the stock Baseline
    #    row has one network: the first).
    for name, stage, cfg in ROWS:
        if stage not in args.rows:
            continue
        if stage in EVAL_ROWS:  # another row's model, evaluated on another feature (no training)
            trained, feature = EVAL_ROWS[stage]
            d = os.path.join(out, stage)
            if not (args.reuse and _json(os.path.join(d, f"eval_{feature}.json"))):
                timings[stage] = _run(f"{name} (eval of the {trained} model)", [
                    "--config-file", cfg, "--eval-only", "MODEL.WEIGHTS", os.path.join(out, trained, "model_final.pth"),
                    "INCLR.TEST_FEATURE", feature] + seed_opts + args.opts, d)
            table.append((name, _json(os.path.join(d, f"eval_{feature}.json")), {}))
            continue
        extra = first_round_scale_opts(os.path.join(out, SCALE_FROM[stage])) if stage in SCALE_FROM else []
        two = cfg.startswith("configs/INCLR/")
        table.append((name, *_adapt(out, stage, name, cfg, weights, weights2 if two else None, extra, seed, args,
                                    timings)))

    # 4. Per-change rows: INCLR with one part of the reference recipe undone.
    changes = []
    for ch in _selected_changes(args):
        w1, w2 = weights, weights2
        if ch.pretrain is not None:
            w1, w2 = _pretrain_pair(out, "_" + ch.key, ch.pretrain, seed, args, timings)
        res, q = _adapt(out, "change_" + ch.key, ch.label, INCLR_CFG, w1, w1 if ch.one_source else w2, ch.adapt,
                        seed, args, timings)
        changes.append({"key": ch.key, "change": ch.label, "metrics": res, "pseudo_labels": q})

    # 5. Feature rows (Table II) on the INCLR model.
    feat_rows = []
    if "inclr" in args.rows and not args.no_features:
        model = os.path.join(out, "inclr", "model_final.pth")
        feat_dir = os.path.join(out, "features")
        for feat in FEATURES:
            res_path = os.path.join(feat_dir, f"eval_{feat}.json")
            if not (args.reuse and _json(res_path)):
                timings[f"eval_{feat}"] = _run(f"INCLR features: {feat}", ["--config-file", INCLR_CFG, "--eval-only",
                                               "MODEL.WEIGHTS", model, "INCLR.TEST_FEATURE", feat]
                                               + seed_opts + args.opts, feat_dir)
            feat_rows.append((feat, _json(res_path)))

    total = time.perf_counter() - t_start
    payload = {
        "benchmark": f"synthetic (SynthA -> {_target(args)}), docs/design.md §7",
        "quick": args.quick, "machine": _machine(), "device": _device(), "seed": seed,
        "source_models": [weights, weights2],
        "wall_seconds": round(total, 1), "stage_seconds": {k: round(v, 1) for k, v in timings.items()},
        "rows": [{"method": n, "metrics": r, "pseudo_labels": q} for n, r, q in table],
        "changes": changes,
        "features": [{"feature": f, "metrics": r} for f, r in feat_rows],
    }
    md = render_markdown(table, feat_rows, args, total, seed)
    print("\n" + md)
    atomic_write_text(os.path.join(out, "results.md"), md)  # a kill never leaves half a table
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(payload, indent=2))
    if "inclr" in args.rows:
        inclr_dir = os.path.join(out, "inclr")
        subprocess.run([sys.executable, os.path.join(HERE, "plot_run.py"), inclr_dir,
                        "--direct", os.path.join(direct_dir, "eval_joint.json"), "--compare",
                        *[os.path.join(out, s) for s in ("mmt", "lgmr", "igmo") if s in args.rows]],
                       cwd=ROOT, check=False)
    return payload


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def _ran_on(payloads: Sequence[Dict[str, Any]]) -> str:
    """Where the seeds of ``--combine`` ran, from their own files, not the machine that assembles the table: each
    seed's ``machine``, with its GPU where it had one (files from before ``device`` was recorded give none)."""
    seen = []
    for p in payloads:
        device = str(p.get("device") or "")
        gpu = f", {device}" if device.startswith("GPU") else ""
        seen.append(str(p.get("machine") or "an unrecorded machine") + gpu)
    return "; ".join(dict.fromkeys(seen))


def _device() -> str:
    import torch

    return "GPU " + torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"


def mean_std(values: Sequence[Optional[float]]) -> Tuple[Optional[float], Optional[float]]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of the values present."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, None
    m = sum(vals) / len(vals)
    sd = (sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else 0.0
    return m, sd


METRICS = (("mAP", "metrics", "mAP", 1.0), ("R1", "metrics", "Rank-1", 1.0),
           ("F", "pseudo_labels", "fscore", 100.0), ("NMI", "pseudo_labels", "nmi", 100.0))


def _metric(row: Dict[str, Any], where: str, key: str, scale: float) -> Optional[float]:
    v = (row.get(where) or {}).get(key)
    return None if v is None else float(v) * scale


def aggregate(payloads: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Per row (and per change): every seed's mAP / R1 / pseudo-label F / NMI and their mean ± std.
    A change also gets its paired difference to INCLR in the same seed (mean ± std over seeds)."""
    def summarise(rows_per_seed: List[Dict[str, Any]]) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for label, where, key, scale in METRICS:
            vals = [_metric(r, where, key, scale) for r in rows_per_seed]
            m, sd = mean_std(vals)
            out[label] = {"per_seed": vals, "mean": m, "std": sd}
        return out

    seeds = [p["seed"] for p in payloads]
    rows = []
    refs = [(key, next((i for i, r in enumerate(payloads[0]["rows"]) if r["method"] == method), None))
            for key, method in (("delta_mAP_vs_mmt", "MMT baseline"), ("delta_mAP_vs_mmt_global", MMT_GLOBAL))]
    for i, row in enumerate(payloads[0]["rows"]):
        rows.append({"method": row["method"], **summarise([p["rows"][i] for p in payloads])})
        for key, ref in refs:
            if ref is not None and i != ref:  # paired: each seed's row against that seed's reference row
                diffs = [None if a is None or b is None else a - b for a, b in zip(
                    rows[-1]["mAP"]["per_seed"], (_metric(p["rows"][ref], "metrics", "mAP", 1.0) for p in payloads))]
                d_mean, d_std = mean_std(diffs)
                rows[-1][key] = {"per_seed": diffs, "mean": d_mean, "std": d_std}
    inclr_map = [next((_metric(r, "metrics", "mAP", 1.0) for r in p["rows"] if r["method"].startswith("INCLR (")),
                      None) for p in payloads]
    changes = []
    for i, ch in enumerate(payloads[0].get("changes", [])):
        per = [p["changes"][i] for p in payloads]
        diffs = [None if a is None or b is None else a - b
                 for a, b in zip((_metric(r, "metrics", "mAP", 1.0) for r in per), inclr_map)]
        d_mean, d_std = mean_std(diffs)
        changes.append({"key": ch["key"], "change": ch["change"], **summarise(per),
                        "delta_mAP_vs_inclr": {"per_seed": diffs, "mean": d_mean, "std": d_std}})
    return {"seeds": seeds, "rows": rows, "changes": changes}


def _pm(s: Dict[str, Any]) -> str:
    return "–" if s["mean"] is None else f"{s['mean']:.1f} ± {s['std']:.1f}"


def _delta(d: Optional[Dict[str, Any]]) -> str:
    return "–" if not d or d["mean"] is None else f"{d['mean']:+.1f} ± {d['std']:.1f}"


def _per_seed(s: Dict[str, Any]) -> str:
    return " / ".join(_fmt(v) for v in s["per_seed"])


def _how_assembled(args) -> str:
    if args.combine:
        return " (the seeds' own run times; the table assembled with --combine from their results.json)"
    return " (--reuse: stages run before were read, not rerun)" if args.reuse else ""


def render_multi_seed(agg: Dict[str, Any], payloads: Sequence[Dict[str, Any]], args, total: float) -> str:
    seeds = " ".join(str(s) for s in agg["seeds"])
    per_seed = ("its own adaptation runs, all from the two --pretrained source models" if args.pretrained
                else "its own two source models and adaptation runs")
    lines = [f"### Synthetic benchmark SynthA → {_target(args)}, seeds {seeds}{' (quick mode)' if args.quick else ''}",
             "", f"`python tools/run_demo.py{' --quick' if args.quick else ''}{_cmdline_extra(args)}` on "
             f"{_ran_on(payloads) if args.combine else _device()}, {total / 60:.1f} min in all{_how_assembled(args)}. "
             f"Mean ± sample std over {len(agg['seeds'])} seeds (each seed: {per_seed}); pseudo-label F / NMI of "
             "the last round. Synthetic data: not a claim about Market/Duke/MSMT.", ""]
    if agg["rows"]:
        vs_global = any(r["method"] == MMT_GLOBAL for r in agg["rows"])  # its column only where the row was run
        lines += ["| Method | mAP | Δ mAP vs MMT (paired) | "
                  + ("Δ mAP vs MMT global only (paired) | " if vs_global else "")
                  + "R1 | pseudo-label F | NMI | mAP per seed |", "|---" * (8 if vs_global else 7) + "|"]
        for r in agg["rows"]:
            lines.append(f"| {r['method']} | {_pm(r['mAP'])} | {_delta(r.get('delta_mAP_vs_mmt'))} | "
                         + (f"{_delta(r.get('delta_mAP_vs_mmt_global'))} | " if vs_global else "")
                         + f"{_pm(r['R1'])} | {_pm(r['F'])} | {_pm(r['NMI'])} | {_per_seed(r['mAP'])} |")
    if agg["changes"]:
        lines += ["", "INCLR with one part of the reference recipe undone (items 1–6); Δ = paired "
                  "difference to INCLR with everything on, same seed:", "",
                  "| Undone | mAP | Δ mAP | R1 | pseudo-label F | NMI | mAP per seed |", "|---|---|---|---|---|---|---|"]
        for c in agg["changes"]:
            lines.append(f"| {c['change']} | {_pm(c['mAP'])} | {_delta(c['delta_mAP_vs_inclr'])} | {_pm(c['R1'])} | "
                         f"{_pm(c['F'])} | "
                         f"{_pm(c['NMI'])} | {_per_seed(c['mAP'])} |")
    # Per-round label quality (mean over seeds) of every adaptation row: the diagnosis behind the mAP.
    round_rows, pr_rows = [], []
    for i, row in enumerate(payloads[0]["rows"]):
        per_seed_rounds = [(p["rows"][i].get("pseudo_labels") or {}).get("rounds") or [] for p in payloads]
        n = min(len(r) for r in per_seed_rounds)
        if n:
            def per_round(key: str) -> List[Optional[float]]:
                return [mean_std([r[k].get(key) for r in per_seed_rounds])[0] for k in range(n)]

            f, c = per_round("fscore"), per_round("clusters")
            round_rows.append(f"| {row['method']} | " + " | ".join(f"{100 * a:.1f} ({b:.0f})" for a, b in zip(f, c)) + " |")
            prec, rec = per_round("precision"), per_round("recall")
            if all(v is not None for v in prec + rec):
                pr_rows.append(f"| {row['method']} | " + " | ".join(f"{a:.2f} / {b:.2f}" for a, b in zip(prec, rec)) + " |")
    for title, table in (("Pseudo-label F per round (clusters), mean over seeds:", round_rows),
                         ("Pairwise precision / recall per round, mean over seeds:", pr_rows)):
        if table:
            n = max(r.count("|") - 2 for r in table)
            lines += ["", title, "", "| Method | " + " | ".join(f"round {k}" for k in range(n)) + " |",
                      "|---" * (n + 1) + "|"] + table
    return "\n".join(lines) + "\n"


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
    seeding = ap.add_mutually_exclusive_group()
    seeding.add_argument("--seed", type=int, default=None,
                         help=f"INCLR.SEED N for every stage (N + {SECOND_SOURCE_OFFSET} for the second source model): "
                              "fixes initialisation and sampling (default: random, as FastReID)")
    seeding.add_argument("--seeds", type=int, nargs="+", default=None, metavar="N",
                         help="one whole run per seed (OUTPUT_DIR/seed<N>/), then mean ± std and per-seed figures in "
                              "OUTPUT_DIR/results.md and results.json")
    ap.add_argument("--rows", nargs="*", default=DEFAULT_ROWS, choices=[r[1] for r in ROWS] + ["all"],
                    help=f"rows to run (default: {' '.join(DEFAULT_ROWS)}; all = {' '.join(ABLATION_ROWS)}; "
                         "also undetached, baseline_uda)")
    ap.add_argument("--changes", nargs="*", default=None, choices=[c.key for c in CHANGES], metavar="KEY",
                    help="also run INCLR with each part of the reference recipe undone alone (the per-change table; "
                         "two of them pretrain their own source models); KEYs pick some of: "
                         + ", ".join(c.key for c in CHANGES) + " (default: all)")
    ap.add_argument("--no-features", action="store_true", help="skip the Table II feature rows")
    ap.add_argument("--combine", nargs="+", default=None, metavar="RESULTS_JSON",
                    help="run nothing: the multi-seed table of --seeds from these per-seed results.json files (one "
                         "per seed, in --seeds order, e.g. the copies committed under docs/runs/), written to "
                         "OUTPUT_DIR/results.md and results.json; give the flags the runs were made with")
    args = ap.parse_args()
    if len(args.pretrained) > 2:
        ap.error("--pretrained takes one or two source models")
    args.rows_given = list(args.rows)  # as typed, for the command line printed with the results
    if "all" in args.rows:
        args.rows = ABLATION_ROWS + [r for r in args.rows if r not in ABLATION_ROWS + ["all"]]
    if args.changes is not None and "inclr" not in args.rows:
        args.rows = args.rows + ["inclr"]  # the per-change table's reference row
    if any(r in args.rows for r in list(EVAL_ROWS) + list(SCALE_FROM)) and "mmt" not in args.rows:
        args.rows = ["mmt"] + args.rows  # their model / clustering scale comes from the MMT row of the same seed
    if args.changes is not None and args.pretrained:
        ap.error("--changes pretrains its own source models for items 2 and 6: leave out --pretrained")
    if args.combine is not None and args.seeds is None:
        ap.error("--combine makes the table of --seeds: give --seeds N ... in the order of the files")
    out = os.path.abspath(args.output_dir)
    if args.seeds is None:
        run_seed(out, args.seed, args)
        print(f"[demo] results: {os.path.join(out, 'results.md')}  plots: {os.path.join(out, 'inclr', 'plots')}")
        return
    if len(set(args.seeds)) != len(args.seeds):
        ap.error(f"--seeds must differ, got {args.seeds}")
    t0 = time.perf_counter()
    if args.combine is not None:
        payloads = load_seed_results(args.combine, args.seeds)
        total = sum(float(p.get("wall_seconds") or 0.0) for p in payloads)
    else:
        payloads = [run_seed(os.path.join(out, f"seed{s}"), s, args) for s in args.seeds]
        total = time.perf_counter() - t0
    agg = aggregate(payloads)
    md = render_multi_seed(agg, payloads, args, total)
    print("\n" + md)
    atomic_write_text(os.path.join(out, "results.md"), md)
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(
        {"benchmark": f"synthetic (SynthA -> {_target(args)}), docs/design.md §7", "quick": args.quick,
         "machine": _ran_on(payloads) if args.combine else _machine(),
         "wall_seconds": round(total, 1), **agg, "runs": payloads}, indent=2))
    print(f"[demo] results: {os.path.join(out, 'results.md')}")


def load_seed_results(paths: Sequence[str], seeds: Sequence[int]) -> List[Dict[str, Any]]:
    """The per-seed payloads of ``--combine``: each file a seed's results.json, in the order of ``seeds``; a
    missing file, a file of another seed or a mix of quick and full runs is an error naming the file."""
    if len(paths) != len(seeds):
        raise SystemExit(f"--combine: {len(paths)} file(s) for {len(seeds)} seed(s) ({' '.join(map(str, seeds))}): "
                         "give one results.json per seed, in --seeds order")
    payloads = []
    for path, seed in zip(paths, seeds):
        try:
            with open(path) as f:
                payload = json.load(f)
        except (OSError, ValueError) as e:
            raise SystemExit(f"--combine: cannot read {path}: {e}") from None
        if payload.get("seed") != seed:
            raise SystemExit(f"--combine: {path} holds seed {payload.get('seed')}, expected {seed} (--seeds order)")
        payloads.append(payload)
    if len({bool(p.get("quick")) for p in payloads}) > 1:
        raise SystemExit("--combine: the files mix --quick and full runs: " + ", ".join(paths))
    return payloads


def _cmdline_extra(args) -> str:
    extra = ""
    if args.pretrained:
        extra += " --pretrained " + " ".join(args.pretrained)
    if args.seeds is not None:
        extra += " --seeds " + " ".join(str(s) for s in args.seeds)
    elif args.seed is not None:
        extra += f" --seed {args.seed}"
    rows = getattr(args, "rows_given", args.rows)
    if rows != DEFAULT_ROWS:
        extra += " --rows " + " ".join(rows)
    if args.changes is not None:
        extra += " --changes" + "".join(" " + k for k in args.changes)
    if args.no_features:
        extra += " --no-features"
    if args.opts:
        extra += " --opts " + " ".join(shlex.quote(o) for o in args.opts)
    return extra


def _target(args) -> str:
    """The adaptation target as the runs saw it: DATASETS.NAMES from --opts (e.g. SynthB10), else SynthB."""
    opts = list(args.opts)
    for key, value in zip(opts[::2], opts[1::2]):
        if key == "DATASETS.NAMES":
            names = ast.literal_eval(value)
            return " + ".join(names) if isinstance(names, (list, tuple)) else str(names)
    return "SynthB"


def render_markdown(table, feat_rows, args, total: float, seed: Optional[int] = None) -> str:
    seed_arg = "" if seed is None or args.seeds is None else f" (seed {seed} of --seeds)"
    lines = [
        f"### Synthetic benchmark SynthA → {_target(args)}{' (quick mode)' if args.quick else ''}{seed_arg}",
        "",
        f"`python tools/run_demo.py{' --quick' if args.quick else ''}{_cmdline_extra(args)}` on {_device()}, "
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
