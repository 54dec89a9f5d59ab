#!/usr/bin/env python
"""Compare one method across several ``tools/run_demo.py --seeds`` runs that differ in a setting (e.g.
``--opts INCLR.CLUSTER.EPS_RULE auto``): mAP mean ± sample std, the paired difference to the first run
(same seed, same source models), the last round's label quality, pairwise precision / recall and the
recall of the true identities' cross-camera pairs at the first and last round, DBSCAN's eps per round
and the clustering step's seconds per round.

    python tools/compare_runs.py "eps 0.6=output/fixed" "auto=output/auto"

Each run folder holds ``results.json`` (written by ``run_demo.py --seeds``) and, per seed,
``seed<N>/<stage>/pseudo_labels.jsonl``; only seeds present in every run are compared.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
from typing import Dict, List, Optional, Sequence, Tuple


#: run_demo.py's method names -> the stage folder holding that row's pseudo_labels.jsonl
STAGE_OF = {"INCLR (LGMR+IGMO)": ("inclr",), "MMT baseline": ("mmt",), "+LGMR": ("lgmr",), "+IGMO": ("igmo",)}


def _mean_std(xs: Sequence[float]) -> str:
    return f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


def load_run(folder: str, method: str) -> Dict[int, Dict[str, object]]:
    """seed -> {"mAP", "rounds" (each: fscore, precision, recall), "eps", "xcam" (cross-camera recall or None) and
    "cluster_s" (seconds of the clustering step), each per round from the label log}."""
    path = os.path.join(folder, "results.json")
    if not os.path.isfile(path):
        raise SystemExit(f"{path} not found: run tools/run_demo.py --seeds ... --output-dir {folder} first")
    with open(path) as f:
        res = json.load(f)
    out: Dict[int, Dict[str, object]] = {}
    for run in res.get("runs", []):
        row = next((r for r in run["rows"] if r["method"] == method), None)
        if row is None:
            continue
        seed = int(run["seed"])
        stage = os.path.join(folder, f"seed{seed}")
        eps: List[Optional[float]] = []
        xcam: List[Optional[float]] = []
        cluster_s: List[float] = []
        for name in sorted(os.listdir(stage)) if os.path.isdir(stage) else []:
            log = os.path.join(stage, name, "pseudo_labels.jsonl")
            if name in STAGE_OF.get(method, ()) and os.path.isfile(log):
                with open(log) as f:
                    recs = [json.loads(line) for line in f if line.strip()]
                eps = [r.get("eps") for r in recs]
                xcam = [r.get("cross_camera_recall") for r in recs]
                cluster_s = [float(r["cluster_seconds"]) for r in recs if "cluster_seconds" in r]
        out[seed] = {"mAP": float(row["metrics"]["mAP"]), "rounds": row["pseudo_labels"].get("rounds", []),
                     "eps": eps, "xcam": xcam, "cluster_s": cluster_s}
    if not out:
        raise SystemExit(f"{path}: no row named {method!r}")
    return out


def compare(runs: Sequence[Tuple[str, Dict[int, Dict[str, object]]]]) -> List[str]:
    """Markdown lines: one row per run, paired to the first over the seeds all runs share."""
    seeds = sorted(set.intersection(*(set(r) for _, r in runs)))
    if not seeds:
        raise SystemExit("the runs share no seed")
    base = runs[0][1]
    lines = [f"Seeds {' '.join(map(str, seeds))}; Δ = the run's mAP minus {runs[0][0]!r}'s, seed by seed.", "",
             "| setting | mAP | Δ mAP (paired) | mAP per seed | last-round F | precision / recall, first → last round |"
             " cross-camera pair recall, first → last round | DBSCAN eps per round (mean over seeds) |"
             " clustering s per round (rounds ≥ 1) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, run in runs:
        maps = [run[s]["mAP"] for s in seeds]
        delta = "–" if run is base else _mean_std([run[s]["mAP"] - base[s]["mAP"] for s in seeds])
        rounds = [run[s]["rounds"] for s in seeds]
        f_last = _mean_std([100 * r[-1]["fscore"] for r in rounds]) if all(rounds) else "–"
        pr = "–"
        if all(rounds):
            p0, r0 = (statistics.mean(r[0][k] for r in rounds) for k in ("precision", "recall"))
            p1, r1 = (statistics.mean(r[-1][k] for r in rounds) for k in ("precision", "recall"))
            pr = f"{p0:.2f} / {r0:.2f} → {p1:.2f} / {r1:.2f}"
        xc = [run[s]["xcam"] for s in seeds]  # label logs written before the cross-camera recall have None
        xcam = "–"
        if all(xc) and all(v is not None for lst in xc for v in (lst[0], lst[-1])):
            xcam = f"{statistics.mean(lst[0] for lst in xc):.2f} → {statistics.mean(lst[-1] for lst in xc):.2f}"
        eps_lists = [run[s]["eps"] for s in seeds]
        eps = "–"
        if eps_lists and all(eps_lists) and all(e is not None for lst in eps_lists for e in lst):
            n = min(len(lst) for lst in eps_lists)
            eps = " / ".join(f"{statistics.mean(lst[i] for lst in eps_lists):.2f}" for i in range(n))
        secs = [x for s in seeds for x in run[s]["cluster_s"][1:]]  # round 0 also pays one-off compilation
        cost = f"{statistics.mean(secs):.2f} ({min(secs):.2f}–{max(secs):.2f})" if secs else "–"
        lines.append(f"| {label} | {_mean_std(maps)} | {delta} | {' / '.join(f'{m:.1f}' for m in maps)} | {f_last} | "
                     f"{pr} | {xcam} | {eps} | {cost} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", metavar="LABEL=FOLDER", help="run_demo.py --seeds output folders")
    ap.add_argument("--method", default="INCLR (LGMR+IGMO)", help="the row compared (a run_demo method name)")
    args = ap.parse_args()
    runs = []
    for spec in args.runs:
        label, sep, folder = spec.partition("=")
        if not sep:
            raise SystemExit(f"{spec!r}: write LABEL=FOLDER, e.g. 'eps 0.6=output/fixed'")
        runs.append((label, load_run(folder, args.method)))
    print("\n".join(compare(runs)))


if __name__ == "__main__":
    main()
