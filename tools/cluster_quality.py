#!/usr/bin/env python
"""Pseudo-label quality of a model on its target training set, for a grid of clustering settings.

Extracts features once (as the PseudoLabelHook does: teachers' mean for INCLR, the model's
branches for a Baseline), then clusters with each setting and prints K, outliers, pairwise
precision / recall / F, NMI and ARI against the true identities (docs/design.md §4.6). Use it to see
whether a source model is good enough for clustering-based adaptation before spending a run.

    python tools/cluster_quality.py --config-file configs/UDA/synthetic_baseline.yml \
        --weights output/demo/pretrain/model_final.pth --eps 0.4 0.5 0.6 --camera-norm both

``--eps-rules`` compares DBSCAN's eps rules side by side (docs/design.md §4.3.1) on one Jaccard matrix per
space: ``auto`` (chosen without labels), the fixed ``INCLR.CLUSTER.EPS``, ``mmt`` (RHO rule) and the
``oracle`` (the ``INCLR.CLUSTER.EPS_GRID`` eps of best pairwise F, chosen with the labels); labels of the
global space before LGMR. ``--dump-features out.npz`` saves the extracted features (``global``,
``part1``.., ``ids``, ``camids``) for ``benchmarks/benchmark_eps_rule.py --features``.

    python tools/cluster_quality.py --config-file configs/UDA/synthetic_baseline.yml \
        --weights output/demo/pretrain/model_final.pth --eps-rules --dump-features output/feats_weak.npz
"""
from __future__ import annotations

import argparse
import itertools
import time
from typing import List, Optional


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config-file", required=True)
    ap.add_argument("--weights", required=True, help="model whose features are clustered")
    ap.add_argument("--whole-run", action="store_true",
                    help="--weights is an adaptation run's own checkpoint (its OUTPUT_DIR/model_final.pth: both "
                         "students and teachers), loaded whole, e.g. to see the labels a last round would get")
    ap.add_argument("--teacher", choices=["mean", "t1", "t2"], default="mean",
                    help="an INCLR model's features: the two teachers' mean (what the hook clusters), or one "
                         "teacher's alone (for benchmark_eps_rule.py --teachers)")
    ap.add_argument("--eps", type=float, nargs="+", default=None, help="DBSCAN eps values (default: config)")
    ap.add_argument("--k1", type=int, nargs="+", default=None, help="k-reciprocal k1 values (default: config)")
    ap.add_argument("--camera-norm", choices=["off", "on", "both"], default=None,
                    help="cluster raw and/or per-camera standardised features (default: INCLR.CLUSTER.CAMERA_NORM)")
    ap.add_argument("--eps-rules", action="store_true",
                    help="F / NMI / ARI of EPS_RULE auto, the fixed EPS, mmt and the oracle grid eps, side by side")
    ap.add_argument("--dump-features", default="", metavar="OUT.npz",
                    help="save the features (global, part1.., ids, camids) for benchmarks/benchmark_eps_rule.py --features")
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = ap.parse_args()

    import numpy as np

    import inclr_fastreid  # noqa: F401
    from inclr_fastreid.config import setup_cfg
    from inclr_fastreid.data.target import build_target_train_items
    from inclr_fastreid.engine.features import extract_features
    from inclr_fastreid.engine.pseudo_label_hook import true_identities

    cfg = setup_cfg(args.config_file, args.opts + ["MODEL.WEIGHTS", args.weights], freeze=False)
    items = build_target_train_items(cfg)
    cfg.MODEL.HEADS.NUM_CLASSES = cfg.MODEL.HEADS.NUM_CLASSES or 1
    cfg.INCLR.NUM_SAMPLES = len(items)
    cfg.freeze()
    model = build_feature_model(cfg, whole_run=args.whole_run, teacher=args.teacher)
    true_ids = true_identities(items)
    if true_ids is None:
        raise SystemExit("The target set has no identities to measure against.")
    camids = np.array([it.camid for it in items], dtype=np.int64)
    t0 = time.perf_counter()
    feats = extract_features(model, items, cfg)
    print(f"features of {len(items)} images in {time.perf_counter() - t0:.1f}s: {sorted(feats)}")
    parts = sorted(k for k in feats if k.startswith("part"))
    c = cfg.INCLR
    if args.dump_features:
        from inclr_fastreid.io import atomic_savez

        atomic_savez(args.dump_features, ids=true_ids, camids=camids, **{k: v.numpy() for k, v in feats.items()})
        print(f"features written to {args.dump_features}")
    if args.eps_rules:
        print_eps_rules(cfg, feats, parts, true_ids, camids)
        if args.eps is None and args.k1 is None:
            return
    norms = camera_norm_settings(args.camera_norm, bool(c.CLUSTER.CAMERA_NORM))
    rows = eps_table_rows(cfg, feats, parts, true_ids, camids, args.eps or [c.CLUSTER.EPS],
                          args.k1 or [c.CLUSTER.K1], norms)
    ids = len(np.unique(true_ids))
    print(f"\n{ids} true identities; LGMR {'on' if c.LGMR.ENABLED and parts else 'off'}\n")
    print("| eps | k1 | camera norm | K | outliers | precision | recall | F | NMI | ARI |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for eps, k1, cam, k, out, q in rows:
        print(f"| {eps} | {k1} | {'on' if cam else 'off'} | {k} | {out} | {q['pairwise_precision']:.3f} | "
              f"{q['pairwise_recall']:.3f} | {q['pairwise_fscore']:.3f} | {q['nmi']:.3f} | {q['ari']:.3f} |")


def eps_table_rows(cfg, feats, parts, true_ids, camids, eps_values, k1_values, norms) -> List[tuple]:
    """(eps, k1, camera norm, K, outliers, label quality) of the final labels at every combination, each at
    exactly that eps and k1 (EPS_RULE and K1_RULE fixed, whatever the config's rules) and with the config's LGMR."""
    from inclr_fastreid.pseudo_labels import cluster_params_from_cfg, generate_pseudo_labels, label_quality

    c = cfg.INCLR
    rows = []
    for eps, k1, cam in itertools.product(eps_values, k1_values, norms):
        params = cluster_params_from_cfg(cfg, eps=eps, k1=k1, max_distance=max(c.CLUSTER.MAX_DISTANCE, eps),
                                         camera_norm=cam, lgmr_enabled=bool(c.LGMR.ENABLED and parts),
                                         eps_rule="fixed", k1_rule="fixed")
        res = generate_pseudo_labels(feats["global"].numpy(), [feats[p].numpy() for p in parts], params,
                                     camids=camids)
        rows.append((eps, k1, cam, res.num_classes, res.num_outliers, label_quality(res.labels, true_ids)))
    return rows


def camera_norm_settings(choice: Optional[str], config_value: bool) -> List[bool]:
    """The CAMERA_NORM values the eps / k1 table clusters with: ``--camera-norm`` off / on / both, or
    without the flag the config's own (what a run with that config clusters)."""
    return [config_value] if choice is None else {"off": [False], "on": [True], "both": [False, True]}[choice]


def build_feature_model(cfg, whole_run: bool = False, teacher: str = "mean"):
    """The network whose features the first clustering sees, from MODEL.WEIGHTS: for INCLR both source
    models (INCLR.WEIGHTS2 into student 2 / teacher 2, as the trainer loads them: the features are the two
    teachers' mean), for a Baseline the one checkpoint. ``teacher`` t1 / t2: that teacher's weights in
    both teachers (:func:`keep_one_teacher`), so the features are its own."""
    from fastreid.utils.checkpoint import Checkpointer

    from inclr_fastreid.engine.trainer import INCLRTrainer, load_source_models
    from inclr_fastreid.modeling.interface import MeanTeacherModel

    if whole_run:  # an adaptation checkpoint holds every network of the model (its classifiers grew with it)
        model = INCLRTrainer.build_model_for_eval(cfg)
    else:
        model = INCLRTrainer.build_model(cfg)
        if isinstance(model, MeanTeacherModel):
            load_source_models(model, cfg)
        else:
            Checkpointer(model).load(cfg.MODEL.WEIGHTS)
    if teacher != "mean":
        keep_one_teacher(model, teacher)
    return model


def keep_one_teacher(model, teacher: str) -> None:
    """Copy teacher ``t1`` (``teacher1``) or ``t2`` (``teacher2``) into the other, so the teachers' mean
    features are that teacher's alone; only a model with two mean teachers has a choice."""
    from inclr_fastreid.modeling.interface import MeanTeacherModel

    src, dst = {"t1": ("teacher1", "teacher2"), "t2": ("teacher2", "teacher1")}[teacher]
    if not isinstance(model, MeanTeacherModel) or not {src, dst} <= set(model.network_names):
        raise SystemExit(f"--teacher {teacher}: the model ({type(model).__name__}) has no two mean teachers "
                         f"(teacher1, teacher2); use --teacher mean")
    getattr(model, dst).load_state_dict(getattr(model, src).state_dict())


def print_eps_rules(cfg, feats, parts, true_ids, camids) -> None:
    """One row per eps rule (auto / agreement alone / fixed / mmt / oracle): eps, K, outliers, P / R / F, NMI,
    ARI and the recall of the identities' cross-camera pairs."""
    import numpy as np

    from inclr_fastreid.benchmarking.eps_rules import compare_eps_rules
    from inclr_fastreid.pseudo_labels import camera_normalize

    c = cfg.INCLR.CLUSTER
    names = ["global"] + list(parts)  # auto scores every space, LGMR or not (docs/design.md §4.3.1)
    spaces = {k: feats[k].numpy() for k in names}
    if c.CAMERA_NORM:
        spaces = {k: camera_normalize(v, camids) for k, v in spaces.items()}
    r = compare_eps_rules(spaces, true_ids, c.EPS_GRID, np.asarray(camids), k1=c.K1, k2=c.K2,
                          min_samples=c.MIN_SAMPLES, max_distance=c.MAX_DISTANCE, default_eps=c.EPS, rho=c.RHO,
                          coverage=c.AUTO_COVERAGE,
                          k1_size=c.K1_RULE == "size", k1_per_size=c.K1_PER_SIZE, k1_min=c.K1_MIN)
    choice = r["choice"]
    print(f"\nEPS_RULE auto ({choice['criterion']}, {choice['select']}, spaces {names}, K1 {c.K1}): grid {choice['grid']}\n"
          f"  scores {choice['scores']}\n  F(grid) {[round(f, 3) for f in r['f_grid']]}")
    print(f"\n{len(np.unique(true_ids))} true identities, {len(true_ids)} images; global space before LGMR\n")
    print("| eps rule | eps | K | outliers | precision | recall | F | NMI | ARI | cross-camera pair recall |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rules = [("auto", "auto (no labels)"), ("agree", "auto, agreement alone (no coverage)"),
             ("fixed", "fixed EPS"), ("mmt", f"mmt (RHO {c.RHO:g})"), ("oracle", "oracle (grid, labels)")]
    if "k1size" in r:  # K1_RULE size: the round's k1 from auto's median cluster size at K1 (docs/design.md §4.3.2)
        k, m = r["k1size"]["k1"], r["k1size"]["median_size"]
        rules += [("k1size", f"auto at k1 {k} (K1_RULE size: median cluster size {m:g} at K1 {c.K1})"),
                  ("k1size_oracle", f"oracle at k1 {k} (grid, labels)")]
    for rule, label in rules:
        q = r[rule]["quality"]
        print(f"| {label} | {r[rule]['eps']:.3f} | {q['num_clusters']} | {q['num_outliers']} | "
              f"{q['pairwise_precision']:.3f} | {q['pairwise_recall']:.3f} | {q['pairwise_fscore']:.3f} | "
              f"{q['nmi']:.3f} | {q['ari']:.3f} | {r[rule]['cross_cam_recall']:.3f} |")


if __name__ == "__main__":
    main()
