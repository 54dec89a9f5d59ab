#!/usr/bin/env python
"""Plots of one adaptation run (OUTPUT_DIR of tools/train_net.py), written to OUTPUT_DIR/plots/:

- ``curves.png``: target mAP per epoch, pseudo-label pairwise F-score and NMI per epoch
  (with ``--compare DIR ...``: the other runs' mAP curves too);
- ``clusters.png``: number of clusters and outliers per clustering round;
- ``credibility.png``: histogram of IGMO credibility w_i for correct vs wrong pseudo labels
  (the paper's Fig. 3), from the last ``credibility_epoch*.npz``;
- ``ranked_lists.png``: a few target queries with their top gallery matches (green = same
  identity), from the run's final model (skip with ``--no-ranked``).

    python tools/plot_run.py output/demo/inclr --compare output/demo/mmt
"""
from __future__ import annotations

import argparse
import glob
import json
import os
from typing import Dict, List

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_jsonl(path: str) -> List[dict]:
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def eval_curve(run_dir: str, iters_per_epoch: int) -> Dict[str, list]:
    """(epoch, mAP, R1) from FastReID's metrics.json (one JSON object per write)."""
    epochs, maps, r1 = [], [], []
    for rec in read_jsonl(os.path.join(run_dir, "metrics.json")):
        if "mAP" in rec:
            epochs.append(round((rec["iteration"] + 1) / max(1, iters_per_epoch)))
            maps.append(rec["mAP"])
            r1.append(rec.get("Rank-1"))
    final = os.path.join(run_dir, "final_results.json")
    cfg_epochs = _max_epoch(run_dir)
    if os.path.isfile(final) and cfg_epochs and (not epochs or epochs[-1] < cfg_epochs):
        with open(final) as f:  # the last evaluation is not always flushed to metrics.json
            res = json.load(f)
        epochs.append(cfg_epochs)
        maps.append(res["mAP"])
        r1.append(res.get("Rank-1"))
    return {"epoch": epochs, "mAP": maps, "R1": r1}


def _max_epoch(run_dir: str) -> int:
    cfg_path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(cfg_path):
        return 0
    import yaml

    with open(cfg_path) as f:
        return int(yaml.safe_load(f).get("SOLVER", {}).get("MAX_EPOCH", 0))


def _iters_per_epoch(run_dir: str) -> int:
    cfg_path = os.path.join(run_dir, "config.yaml")
    if os.path.isfile(cfg_path):
        import yaml

        with open(cfg_path) as f:
            cfg = yaml.safe_load(f)
        return int(cfg.get("INCLR", {}).get("ITERS_PER_EPOCH", 1))
    return 1


def plot_curves(run_dir: str, compare: List[str], out: str, direct: str = "") -> None:
    rounds = read_jsonl(os.path.join(run_dir, "pseudo_labels.jsonl"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if direct and os.path.isfile(direct):
        with open(direct) as f:
            axes[0].axhline(json.load(f)["mAP"], color="gray", linestyle="--", label="direct transfer")
    for d in [run_dir] + compare:
        c = eval_curve(d, _iters_per_epoch(d))
        if c["epoch"]:
            axes[0].plot(c["epoch"], c["mAP"], marker="o", label=os.path.basename(os.path.normpath(d)))
    axes[0].set_xlabel("epochs of adaptation")
    axes[0].set_ylabel("target mAP (%)")
    axes[0].set_title("Target mAP per epoch")
    axes[0].legend()
    if rounds:
        ep = [r["epoch"] for r in rounds]
        for key, label in (("pairwise_fscore_after_lgmr", "pairwise F (after LGMR)"),
                           ("pairwise_fscore_before_lgmr", "pairwise F (before LGMR)"),
                           ("nmi_after_lgmr", "NMI (after LGMR)")):
            vals = [r.get(key) for r in rounds]
            if any(v is not None for v in vals):
                axes[1].plot(ep, [np.nan if v is None else v for v in vals], marker="o", label=label)
        axes[1].legend()
    axes[1].set_xlabel("epoch (clustering round)")
    axes[1].set_title("Pseudo-label quality vs true identities")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_clusters(run_dir: str, out: str) -> None:
    rounds = read_jsonl(os.path.join(run_dir, "pseudo_labels.jsonl"))
    if not rounds:
        return
    ep = [r["epoch"] for r in rounds]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ep, [r["num_clusters"] for r in rounds], marker="o", label="clusters (K)")
    ax.plot(ep, [r["num_outliers"] for r in rounds], marker="s", label="outliers")
    ax.set_xlabel("epoch (clustering round)")
    ax.set_title(f"Clusters and outliers ({rounds[0]['num_samples']} target images)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_credibility(run_dir: str, out: str) -> bool:
    files = sorted(glob.glob(os.path.join(run_dir, "credibility_epoch*.npz")))
    if not files:
        return False
    data = np.load(files[-1])
    w, correct = data["credibility"], data["correct"].astype(bool)
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1, 31)
    ax.hist(w[correct], bins=bins, alpha=0.6, density=True, label=f"correct pseudo label (n={correct.sum()})")
    ax.hist(w[~correct], bins=bins, alpha=0.6, density=True, label=f"wrong pseudo label (n={(~correct).sum()})")
    ax.set_xlabel("IGMO credibility w = exp(-KL(p_teacher || p_student))")
    ax.set_ylabel("density")
    ax.set_title(f"Credibility by label correctness ({os.path.basename(files[-1])[:-4]})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def plot_ranked_lists(run_dir: str, out: str, num_queries: int = 5, top: int = 8) -> bool:
    """Top-``top`` gallery images for a few queries, from the run's final model (teacher T1, joint)."""
    import torch

    import inclr_fastreid  # noqa: F401
    from fastreid.data import build_reid_test_loader
    from fastreid.evaluation.evaluator import inference_context
    from PIL import Image

    from inclr_fastreid.config import setup_cfg
    from inclr_fastreid.engine.trainer import INCLRTrainer

    weights = os.path.join(run_dir, "model_final.pth")
    if not os.path.isfile(weights):
        return False
    cfg = setup_cfg(os.path.join(run_dir, "config.yaml"), ["MODEL.WEIGHTS", weights], freeze=False)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.freeze()
    model = INCLRTrainer.build_model_for_eval(cfg)  # the run's classifier rows, checked keys
    loader, num_query = build_reid_test_loader(cfg, dataset_name=cfg.DATASETS.TESTS[0])
    feats, pids, paths = [], [], []
    with inference_context(model), torch.no_grad():
        for batch in loader:
            feats.append(torch.nn.functional.normalize(model(batch).float(), dim=1).cpu())
            pids.append(batch["targets"])
            paths.extend(batch["img_paths"])
    feats, pids = torch.cat(feats), torch.cat(pids).numpy()
    q, g = feats[:num_query], feats[num_query:]
    sim = (q @ g.T).numpy()
    rng = np.random.default_rng(0)
    chosen = rng.choice(num_query, size=min(num_queries, num_query), replace=False)
    fig, axes = plt.subplots(len(chosen), top + 1, figsize=(1.2 * (top + 1), 2.2 * len(chosen)))
    axes = np.atleast_2d(axes)
    for row, qi in enumerate(chosen):
        order = np.argsort(-sim[qi])[:top]
        axes[row, 0].imshow(Image.open(paths[qi]))
        axes[row, 0].set_title("query", fontsize=8)
        for col, gi in enumerate(order, start=1):
            ax = axes[row, col]
            ax.imshow(Image.open(paths[num_query + gi]))
            hit = pids[num_query + gi] == pids[qi]
            for s in ax.spines.values():
                s.set_edgecolor("green" if hit else "red")
                s.set_linewidth(3)
            ax.set_title(f"{sim[qi, gi]:.2f}", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Ranked lists on the target (green: same identity, red: different)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--compare", nargs="*", default=[], help="other run dirs whose mAP curves to overlay")
    ap.add_argument("--direct", default="", help="eval JSON of the source model (dashed line)")
    ap.add_argument("--no-ranked", action="store_true", help="skip the ranked-list picture (needs the model)")
    args = ap.parse_args()
    if not os.path.isdir(args.run_dir):
        raise SystemExit(f"{args.run_dir!r} is not a directory: give the OUTPUT_DIR of a train_net run.")
    out_dir = os.path.join(args.run_dir, "plots")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    plot_curves(args.run_dir, [d for d in args.compare if os.path.isdir(d)], os.path.join(out_dir, "curves.png"),
                args.direct)
    written.append("curves.png")
    plot_clusters(args.run_dir, os.path.join(out_dir, "clusters.png"))
    written.append("clusters.png")
    if plot_credibility(args.run_dir, os.path.join(out_dir, "credibility.png")):
        written.append("credibility.png")
    if not args.no_ranked and plot_ranked_lists(args.run_dir, os.path.join(out_dir, "ranked_lists.png")):
        written.append("ranked_lists.png")
    print(f"[plot_run] wrote {', '.join(written)} to {out_dir}")


if __name__ == "__main__":
    main()
