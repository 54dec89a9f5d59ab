#!/usr/bin/env python
"""How well ``INCLR.CLUSTER.EPS_RULE auto`` picks DBSCAN's eps without labels (docs/design.md §4.3.1).

For each case: the sparse Jaccard distance of every feature space (global + parts) once, DBSCAN at
each eps of the grid, then the pairwise F-score (against the true identities) of the global
clustering at the eps each rule picks: ``auto`` (no labels; the default criterion, agreement x
multi-camera share), ``agree`` (agreement alone, the removed ``AUTO_COVERAGE none``), the ``oracle`` (best grid eps,
chosen with the labels), the fixed default 0.6 and MMT-DBSCAN's rho rule (on the same Jaccard matrix).
One table, one row per case, and the means.

Cases:
  * synthetic (default): Gaussian identities on the unit sphere in look-alike groups, with a camera
    offset, for several images-per-identity and spreads (``--ids``, ``--per-id``, ``--spreads``); the
    part spaces see the same identities with their own centres and noisier features;
  * ``--features a.npz b.npz ...``: features of real models, as ``tools/cluster_quality.py
    --dump-features`` writes them (arrays ``global``, ``part1``.., ``ids``, ``camids``).
``--candidates`` also prints the other label-free criteria that were compared: ``knee`` (the sorted
k-distance curve's knee), ``agreeF`` (cross-space agreement by pairwise F, not chance-corrected),
``sameEps`` (cross-space ARI with every space at the same eps; both score a one-cluster scale 0), ``oneSE``
(auto's score, picked by the one-standard-error rule over the part views: ``benchmarking.eps_rules.one_se_pick``, the
removed ``AUTO_SELECT one_se``), and each case's grid scores. ``--teachers FILE=T1.npz,T2.npz`` adds the mean teachers' agreement for the cases of ``FILE``
(features of each teacher alone, ``tools/cluster_quality.py --teacher t1|t2``): ``teachers`` (the two
teachers' global clusterings' ARI at each eps, ``benchmarking.eps_rules.teacher_agreement``) and ``teachersAV`` (that times
``auto``'s score: both kinds of views' agreement times the coverage).
``--k1-grid K ...`` adds the k-reciprocal neighbourhood size to the choice: ``k1auto`` takes the (k1, eps) whose
auto score is the best over every k1's grid (no labels; ``benchmarking.eps_rules.choose_k1_eps``), ``k1oracle`` the (k1, eps) of best
pairwise F, and the summary compares the two (the F-best eps moves with the images per identity at a fixed k1).
``--k1-size`` adds ``INCLR.CLUSTER.K1_RULE size`` (docs/design.md §4.3.2): ``k1size`` is auto at the k1 that
``K1_PER_SIZE`` (``--k1-per-size``) x the median cluster size of auto's clustering at ``--k1`` gives (no labels;
``k1_rule.k1_from_cluster_size``), measured against ``k1size_oracle``, the F-best eps at that same k1 (and, with
``--k1-grid``, against ``k1oracle``).
``--camera-norm`` standardises every space per camera first (``INCLR.CLUSTER.CAMERA_NORM True``: the
features the hook would cluster). ``--cross-camera`` adds ``auto_xcam`` (the agreement over cross-camera pairs alone, the removed ``INCLR.CLUSTER.AUTO_PAIRS cross_camera``) and
each rule's recall of the identities' cross-camera image pairs (the joins a single-camera cluster misses)
and its share of outliers (images left out of the round's training). ``--draws D`` scores each
``--cap-per-id`` subset D times (a capped subset is a random draw) and prints each case's F(auto)/F(oracle)
over the draws.

    python benchmarks/benchmark_eps_rule.py                       # synthetic cases
    python benchmarks/benchmark_eps_rule.py --features out/weak_7.npz out/strong_18.npz
    python benchmarks/benchmark_eps_rule.py --features out/seed1_src.npz --cross-camera
    python benchmarks/benchmark_eps_rule.py --features out/seed1_src.npz --camera-norm   # as CLUSTER.CAMERA_NORM True
    python benchmarks/benchmark_eps_rule.py --features out/seed1_src.npz --cap-per-id 7 10 --draws 5
    python benchmarks/benchmark_eps_rule.py --features src.npz --teachers src.npz=src_t1.npz,src_t2.npz --candidates
    python benchmarks/benchmark_eps_rule.py --features src.npz --cap-per-id 7 10 --k1-grid 10 15 20 30
    python benchmarks/benchmark_eps_rule.py --features src.npz --cap-per-id 7 10 --camera-norm --k1-size --k1-grid 10 15 20 30
    python benchmarks/benchmark_eps_rule.py --overhead 2500 12936   # one round's seconds, fixed vs auto
"""
from __future__ import annotations

import argparse
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from inclr_fastreid.benchmarking.eps_rules import compare_eps_rules


def synthetic_case(ids: int, per_id: float, spread: float, *, parts: int = 3, dim: int = 128, cams: int = 6,
                   seed: int = 0) -> Tuple[Dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Features of ``1 + parts`` spaces (name -> (N, dim) float32 unit rows), the (N,) true ids and camera ids.

    Each identity has 1 + Poisson(per_id - 1) images, each from one of ``cams`` cameras. Per space:
    centre = normalise(0.8 * group + own) (groups of ~8 look-alike identities), plus the camera's
    offset (norm 0.3), plus isotropic noise of norm ~``spread`` (parts: 1.15 x), normalised.
    """
    rng = np.random.default_rng([seed, ids, int(per_id * 10)])
    counts = 1 + rng.poisson(per_id - 1, ids)
    labels = np.repeat(np.arange(ids), counts)
    cam = rng.integers(0, cams, labels.size)
    out = {}
    for s in range(1 + parts):
        srng = np.random.default_rng([seed, ids, int(per_id * 10), s + 1])
        groups = max(1, ids // 8)
        grp = srng.standard_normal((groups, dim))
        grp /= np.linalg.norm(grp, axis=1, keepdims=True)
        ctr = srng.standard_normal((ids, dim))
        ctr /= np.linalg.norm(ctr, axis=1, keepdims=True)
        ctr = 0.8 * grp[srng.integers(0, groups, ids)] + ctr
        ctr /= np.linalg.norm(ctr, axis=1, keepdims=True)
        off = srng.standard_normal((cams, dim))
        off *= 0.3 / np.linalg.norm(off, axis=1, keepdims=True)
        sigma = spread * (1.0 if s == 0 else 1.15)
        x = ctr[labels] + off[cam] + srng.standard_normal((labels.size, dim)) * (sigma / np.sqrt(dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out["global" if s == 0 else f"part{s}"] = x.astype(np.float32)
    return out, labels, cam


def load_features(path: str) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """Spaces and true ids of a ``--dump-features`` file (``global``, ``part1``.., ``ids``)."""
    z = np.load(path)
    if "global" not in z or "ids" not in z:
        raise SystemExit(f"{path}: needs arrays 'global' and 'ids' (and part1..P), has {sorted(z.files)}")
    spaces = {"global": z["global"]}
    spaces.update({k: z[k] for k in sorted(z.files) if k.startswith("part")})
    return spaces, z["ids"].astype(np.int64)


def load_camids(path: str) -> np.ndarray:
    """The (N,) camera ids of a ``--dump-features`` file (the auto rule's coverage needs them)."""
    z = np.load(path)
    if "camids" not in z:
        raise SystemExit(f"{path}: needs an array 'camids' (tools/cluster_quality.py --dump-features "
                         f"writes it), has {sorted(z.files)}")
    return z["camids"].astype(np.int64)


def parse_teachers(specs: Sequence[str], features: Sequence[str]) -> Dict[str, Tuple[str, str]]:
    """``--teachers FILE=T1.npz,T2.npz ...`` -> {FILE: (T1, T2)}; each FILE must be one of ``--features``."""
    out: Dict[str, Tuple[str, str]] = {}
    for spec in specs:
        name, _, pair = spec.partition("=")
        files = pair.split(",")
        if not name or len(files) != 2 or not all(files):
            raise SystemExit(f"--teachers {spec!r}: write FILE=T1.npz,T2.npz (FILE one of --features)")
        if name not in features:
            raise SystemExit(f"--teachers {spec!r}: {name} is not one of --features {list(features)}")
        out[name] = (files[0], files[1])
    return out


def load_teachers(paths: Tuple[str, str], ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The two teachers' ``global`` features, checked to be of the same images (same ``ids``, same order)."""
    out = []
    for path in paths:
        spaces, t_ids = load_features(path)
        if not np.array_equal(t_ids, ids):
            raise SystemExit(f"{path}: its ids differ from the --features file's (not the same target images, "
                             f"or another order): dump both with the same config")
        out.append(spaces["global"])
    return out[0], out[1]


def cap_per_identity(ids: np.ndarray, cap: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``cap`` images per identity (drawn at random, seeded): the same target
    at a lower density, e.g. ~7 or ~10 images per identity out of the rendered ~18."""
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(ids == i))[:cap] for i in np.unique(ids)]
    return np.sort(np.concatenate(keep))


def f_of(result: Dict[str, object], rule: str) -> float:
    return float(result[rule]["quality"]["pairwise_fscore"])  # type: ignore[index]


def over_oracle(result: Dict[str, object], rule: str = "auto", oracle: str = "oracle") -> float:
    """F(rule) / F(oracle), by default of ``auto``: the issue's label-quality bar asks >= 0.8 (``k1auto`` is
    measured against ``k1oracle``, the best of its own (k1, eps) grid)."""
    return f_of(result, rule) / max(f_of(result, oracle), 1e-12)


def ratio_over_draws(names: Sequence[str], rows: Sequence[Dict[str, object]],
                     rule: str = "auto", oracle: str = "oracle") -> Dict[str, Tuple[float, float, float]]:
    """Case (name without its `` draw k``) -> mean, sample std and min of F(rule)/F(oracle) over its draws:
    a capped subset is one random draw of the target, so its ratio is a sample, not a fixed figure."""
    groups: Dict[str, List[float]] = {}
    for name, r in zip(names, rows):
        case, drawn = re.subn(r" draw \d+", "", name)
        if drawn:
            groups.setdefault(case, []).append(over_oracle(r, rule, oracle))
    return {k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, float(min(v)))
            for k, v in groups.items()}


def time_rounds(sizes: Sequence[int], dim: int, repeats: int = 2) -> None:
    """Seconds of one whole clustering round (``generate_pseudo_labels``: kNN, Jaccard, DBSCAN in 4 spaces,
    LGMR, centroids) under EPS_RULE fixed and auto (best of ``repeats``), on the features of
    ``benchmarks/benchmark_clustering.py`` (inclr_fastreid/benchmarking/features.py)."""
    from inclr_fastreid.benchmarking.features import synthetic_camids, synthetic_features
    from inclr_fastreid.pseudo_labels import ClusterParams, generate_pseudo_labels

    print("| N | D | round fixed s | round auto s | auto's grid + choice s | overhead | eps auto | Jaccard nnz/row |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        spaces = [synthetic_features(n, dim, s, seed=0) for s in range(4)]
        camids = synthetic_camids(n, seed=0)  # the default AUTO_COVERAGE (multi_camera) scores with them
        best: Dict[str, float] = {}
        for rule in ("fixed", "auto"):
            for _ in range(repeats):
                r = generate_pseudo_labels(spaces[0], spaces[1:], ClusterParams(eps_rule=rule), camids=camids)
                best[rule] = min(best.get(rule, np.inf), r.timings["total"])
                if rule == "auto":
                    grid_s, eps = r.timings["eps_auto"], r.eps
        from inclr_fastreid.pseudo_labels import compute_jaccard_distance
        nnz = compute_jaccard_distance(spaces[0], 30, 6, 0.9).nnz / n
        print(f"| {n} | {dim} | {best['fixed']:.1f} | {best['auto']:.1f} | {grid_s:.2f} | "
              f"{100 * (best['auto'] - best['fixed']) / best['fixed']:+.0f} % | {eps:.2f} | {nnz:.0f} |", flush=True)


def main() -> None:
    from inclr_fastreid.pseudo_labels.params import DEFAULT_EPS_GRID

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", nargs="+", default=None, help="npz files of real models' features")
    ap.add_argument("--cap-per-id", type=int, nargs="+", default=None, metavar="N",
                    help="--features: also each file at most N images per identity (random subset), e.g. 7 10")
    ap.add_argument("--ids", type=int, default=250, help="synthetic identities per case")
    ap.add_argument("--per-id", type=float, nargs="+", default=[7, 10, 18], help="synthetic images per identity")
    ap.add_argument("--spreads", type=float, nargs="+", default=[0.8, 1.1, 1.4], help="synthetic noise norms")
    ap.add_argument("--grid", type=float, nargs="+", default=list(DEFAULT_EPS_GRID))
    ap.add_argument("--k1", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--draws", type=int, default=1, metavar="D",
                    help="--cap-per-id: D random subsets per cap (seeds SEED..SEED+D-1), then each case's "
                         "F(auto)/F(oracle) over the draws: mean, std, min")
    ap.add_argument("--candidates", action="store_true", help="also the other label-free criteria compared")
    ap.add_argument("--teachers", nargs="+", default=[], metavar="FILE=T1.npz,T2.npz",
                    help="--features FILE's two mean teachers' features alone (cluster_quality.py --teacher t1 / t2): "
                         "adds the teachers' agreement (teachers, teachersAV)")
    ap.add_argument("--k1-grid", type=int, nargs="+", default=[], metavar="K",
                    help="also choose k1 from these (k1auto, no labels) against the (k1, eps) oracle (k1oracle)")
    ap.add_argument("--k1-size", action="store_true",
                    help="also K1_RULE size (k1size: auto at the k1 of the median cluster size) against its oracle")
    ap.add_argument("--k1-per-size", type=float, default=1.5, help="--k1-size: INCLR.CLUSTER.K1_PER_SIZE")
    ap.add_argument("--k1-min", type=int, default=10, help="--k1-size: INCLR.CLUSTER.K1_MIN")
    ap.add_argument("--cross-camera", action="store_true",
                    help="also the agreement over cross-camera pairs alone (the removed AUTO_PAIRS cross_camera)")
    ap.add_argument("--camera-norm", action="store_true",
                    help="standardise each space per camera before clustering, as INCLR.CLUSTER.CAMERA_NORM True")
    ap.add_argument("--overhead", type=int, nargs="+", default=None, metavar="N",
                    help="instead: time one clustering round, fixed vs auto, at these sizes")
    ap.add_argument("--dim", type=int, default=2048, help="--overhead: feature dimension")
    args = ap.parse_args()
    if args.draws < 1:
        ap.error(f"--draws {args.draws}: give at least 1 (subsets per --cap-per-id value)")
    if args.overhead:
        time_rounds(args.overhead, args.dim)
        return

    teacher_files = parse_teachers(args.teachers, args.features or [])
    # (name, spaces, ids, camids, the two teachers' global features or None)
    cases: List[Tuple[str, Dict[str, np.ndarray], np.ndarray, np.ndarray, Optional[Tuple[np.ndarray, np.ndarray]]]] = []
    if args.features:
        for path in args.features:
            spaces, ids = load_features(path)
            cams = load_camids(path)
            teachers = load_teachers(teacher_files[path], ids) if path in teacher_files else None
            for cap in args.cap_per_id or []:
                for draw in range(args.draws):
                    keep = cap_per_identity(ids, cap, args.seed + draw)
                    name = f"{os.path.basename(path)} <={cap}/id" + (f" draw {draw}" if args.draws > 1 else "")
                    cases.append((name, {k: v[keep] for k, v in spaces.items()}, ids[keep], cams[keep],
                                  None if teachers is None else (teachers[0][keep], teachers[1][keep])))
            cases.append((f"{os.path.basename(path)} ({len(ids) / len(np.unique(ids)):.1f}/id)", spaces, ids, cams,
                          teachers))
    else:
        for per_id in args.per_id:
            for spread in args.spreads:
                spaces, ids, cams = synthetic_case(args.ids, per_id, spread, seed=args.seed)
                cases.append((f"synthetic {per_id:g}/id spread {spread:g}", spaces, ids, cams, None))
    if args.camera_norm:
        from inclr_fastreid.pseudo_labels import camera_normalize
        cases = [(f"{name} camera-norm", {k: camera_normalize(v, cams) for k, v in spaces.items()}, ids, cams,
                  None if t is None else (camera_normalize(t[0], cams), camera_normalize(t[1], cams)))
                 for name, spaces, ids, cams, t in cases]
    recall_rules = ("auto", "agree", "oracle", "fixed")
    head = ["case", "N", "F(auto)", "eps auto", "F(oracle)", "eps oracle", "F(0.6)", "F(mmt)", "eps mmt",
            "auto/oracle", "F(agree)", "eps agree"] + [f"xcam recall / outliers {r}" for r in recall_rules] + \
        ["auto s", "jaccard s"]
    if args.candidates:
        head += ["F(knee)", "eps knee", "F(agreeF)", "eps agreeF", "F(sameEps)", "eps sameEps", "F(oneSE)", "eps oneSE"]
    if teacher_files:
        head += ["F(teachers)", "eps teachers", "F(teachersAV)", "eps teachersAV"]
    if args.cross_camera:
        head += ["F(auto_xcam)", "eps auto_xcam", "xcam recall / outliers auto_xcam"]
    if args.k1_grid:
        head += ["F(k1auto)", "k1 / eps k1auto", "F(k1oracle)", "k1 / eps k1oracle", "k1auto/k1oracle"]
    if args.k1_size:
        head += ["median size", "F(k1size)", "k1 / eps k1size", "F(k1size oracle)", "eps k1size oracle",
                 "k1size/own oracle"] + (["k1size/k1oracle"] if args.k1_grid else [])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    rows = []
    for name, spaces, ids, cams, teachers in cases:
        r = compare_eps_rules(spaces, ids, args.grid, cams, k1=args.k1, candidates=args.candidates,
                              cross_camera=args.cross_camera, teachers=teachers, k1_grid=args.k1_grid,
                              k1_size=args.k1_size, k1_per_size=args.k1_per_size, k1_min=args.k1_min)
        rows.append(r)
        cells = [name, r["n"], f"{f_of(r, 'auto'):.3f}", f"{r['auto']['eps']:.2f}", f"{f_of(r, 'oracle'):.3f}",
                 f"{r['oracle']['eps']:.2f}", f"{f_of(r, 'fixed'):.3f}", f"{f_of(r, 'mmt'):.3f}",
                 f"{r['mmt']['eps']:.3f}", f"{over_oracle(r):.2f}",
                 f"{f_of(r, 'agree'):.3f}", f"{r['agree']['eps']:.2f}"]
        cells += [f"{r[k]['cross_cam_recall']:.2f} / {r[k]['quality']['outlier_ratio']:.0%}" for k in recall_rules]
        cells += [f"{r['auto_s']:.2f}", f"{r['jaccard_s']:.2f}"]
        if args.candidates:
            cells += [f"{f_of(r, 'knee'):.3f}", f"{r['knee']['eps']:.3f}"]
            for c in ("agreeF", "sameEps", "oneSE"):
                cells += [f"{f_of(r, c):.3f}", f"{r[c]['eps']:.2f}"] if c in r else ["-", "-"]
        if teacher_files:
            for c in ("teachers", "teachersAV"):
                cells += [f"{f_of(r, c):.3f}", f"{r[c]['eps']:.2f}"] if c in r else ["-", "-"]
        if args.cross_camera:
            cells += [f"{f_of(r, 'auto_xcam'):.3f}", f"{r['auto_xcam']['eps']:.2f}",
                      f"{r['auto_xcam']['cross_cam_recall']:.2f} / {r['auto_xcam']['quality']['outlier_ratio']:.0%}"]
        if args.k1_grid:
            for k in ("k1auto", "k1oracle"):
                cells += [f"{f_of(r, k):.3f}", f"{r[k]['k1']} / {r[k]['eps']:.2f}"]
            cells += [f"{over_oracle(r, 'k1auto', 'k1oracle'):.2f}"]
        if args.k1_size:
            cells += [f"{r['k1size']['median_size']:g}", f"{f_of(r, 'k1size'):.3f}",
                      f"{r['k1size']['k1']} / {r['k1size']['eps']:.2f}", f"{f_of(r, 'k1size_oracle'):.3f}",
                      f"{r['k1size_oracle']['eps']:.2f}", f"{over_oracle(r, 'k1size', 'k1size_oracle'):.2f}"]
            cells += [f"{over_oracle(r, 'k1size', 'k1oracle'):.2f}"] if args.k1_grid else []
        print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
        if args.candidates:
            print("    grid:      " + " ".join(f"{e:.2f}" for e in r["choice"]["grid"]))
            print("    agreement: " + " ".join(f"{s:.2f}" for s in r["choice"]["agreement"]))
            print("    coverage:  " + " ".join(f"{s:.2f}" for s in r["choice"]["coverage"]))
            if "teacher_agreement" in r:
                print("    teachers:  " + " ".join(f"{s:.2f}" for s in r["teacher_agreement"]))
            print("    F:         " + " ".join(f"{f:.2f}" for f in r["f_grid"]), flush=True)
    extra = ("agree", "oneSE", "teachers", "teachersAV") if args.candidates or teacher_files else ()
    compared = ["auto"] + [k for k in extra if all(k in r for r in rows)]  # each ratio over the draws
    if args.draws > 1:  # each rule against its oracle; k1auto against the (k1, eps) one
        pairs_k1 = ([("k1auto", "k1oracle")] if args.k1_grid else []) + \
            ([("k1size", "k1size_oracle")] if args.k1_size else []) + \
            ([("k1size", "k1oracle")] if args.k1_size and args.k1_grid else [])
        for rule, oracle in [(k, "oracle") for k in compared] + pairs_k1:
            print(f"\nF({rule})/F({oracle}) over the draws of each subset (mean ± std, min):")
            for case, (m, sd, lo) in ratio_over_draws([c[0] for c in cases], rows, rule, oracle).items():
                print(f"  {case}: {m:.2f} ± {sd:.2f}, min {lo:.2f}")
    if args.k1_grid:
        ratios = [over_oracle(r, "k1auto", "k1oracle") for r in rows]
        print(f"\nk1 grid {args.k1_grid}: F(k1auto)/F(k1oracle) over all rows: min {min(ratios):.2f}, below 0.8 in "
              f"{sum(x < 0.8 for x in ratios)} of {len(rows)}; mean F k1auto {np.mean([f_of(r, 'k1auto') for r in rows]):.3f}, "
              f"k1oracle {np.mean([f_of(r, 'k1oracle') for r in rows]):.3f}; k1 picked: "
              + ", ".join(f"{k} x{sum(r['k1auto']['k1'] == k for r in rows)}" for k in args.k1_grid))
    if args.k1_size:
        against = ["k1size_oracle"] + (["k1oracle"] if args.k1_grid else [])
        print(f"\nK1_RULE size (K1_PER_SIZE {args.k1_per_size:g}, K1_MIN {args.k1_min}, K1 {args.k1}): " + "; ".join(
            f"F(k1size)/F({o}) min {min(over_oracle(r, 'k1size', o) for r in rows):.2f}, below 0.8 in "
            f"{sum(over_oracle(r, 'k1size', o) < 0.8 for r in rows)} of {len(rows)}" for o in against)
            + f"; mean F k1size {np.mean([f_of(r, 'k1size') for r in rows]):.3f}; k1 chosen "
            + ", ".join(f"{k} x{n}" for k, n in zip(*np.unique([r['k1size']['k1'] for r in rows], return_counts=True))))
    if len(compared) > 1:
        print("\nF(rule)/F(oracle) over all rows: " + "; ".join(
            f"{k} min {min(over_oracle(r, k) for r in rows):.2f}, below 0.8 in "
            f"{sum(over_oracle(r, k) < 0.8 for r in rows)} of {len(rows)}" for k in compared))
    mean = {k: float(np.mean([f_of(r, k) for r in rows])) for k in ("auto", "agree", "oracle", "fixed", "mmt")}
    if args.candidates or teacher_files:
        print("mean F of the candidates: " + ", ".join(
            f"{k} {np.mean([f_of(r, k) for r in rows]):.3f}"
            for k in ("knee", "agreeF", "sameEps", "oneSE", "teachers", "teachersAV") if all(k in r for r in rows)))
    worst = min(over_oracle(r) for r in rows)
    print(f"\nmean F: auto {mean['auto']:.3f}, agree {mean['agree']:.3f}, oracle {mean['oracle']:.3f}, "
          f"0.6 {mean['fixed']:.3f}, mmt {mean['mmt']:.3f}; worst F(auto)/F(oracle) {worst:.2f}")
    print("mean cross-camera pair recall / outliers: " + ", ".join(
        f"{k} {np.mean([r[k]['cross_cam_recall'] for r in rows]):.2f} / "
        f"{np.mean([r[k]['quality']['outlier_ratio'] for r in rows]):.0%}"
        for k in recall_rules + (("auto_xcam",) if args.cross_camera else ())))


if __name__ == "__main__":
    main()
