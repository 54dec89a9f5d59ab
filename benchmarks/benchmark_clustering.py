#!/usr/bin/env python
"""Time and peak memory of the clustering step (docs/design.md §4.3, §8), next to the dense reference.

Synthetic clustered features (about N/17 identities in look-alike groups, camera offsets, noise
of varying strength; L2-normalised; deterministic from --seed) at Market-1501's and MSMT17's
training-set sizes, D=2048, in four feature spaces (global + 3 parts). For each N, every stage
runs in a fresh subprocess, so its peak RSS (``ru_maxrss``) is the honest peak of a whole process:
  (a) exact kNN search alone (k1 neighbours, global space),
  (b) the whole clustering step per space: kNN + sparse Jaccard + DBSCAN,
  (c) --reference: the dense algorithm as public UDA code runs it (SpCL ``faiss_rerank``-style:
      dense N x N float32 V, V after query expansion and Jaccard matrix, DBSCAN on the dense
      matrix; our own code, vectorised where SpCL is, with SpCL's per-row loops) on the same
      features, plus the ARI of its labels against (b), the largest |d_sparse - d_dense| over the
      stored pairs and the number of dense pairs <= max_distance missing from the sparse matrix,
  (d) --full-step: generate_pseudo_labels over all four spaces with LGMR, in one process.
"base MB" is the process RSS after imports (torch and FastReID come with ``import inclr_fastreid``),
numba compilation and feature generation, before the stage; "peak MB" the process's peak RSS;
"+MB" what the stage itself added.

    python benchmarks/benchmark_clustering.py --sizes 12936 --reference
    python benchmarks/benchmark_clustering.py --sizes 12936 32621 --json output/bench_clustering.json
    python benchmarks/benchmark_clustering.py --sizes 12936 32621 --kmeans 500 1500   # k-means: today's vs previous
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

import numpy as np

from inclr_fastreid.benchmarking.features import synthetic_features, synthetic_identities
from inclr_fastreid.benchmarking.memory import status_mib


# ------------------------------------------------------------------------------------------- reference
def dense_reference_distance(x: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """SpCL ``compute_jaccard_distance`` (search_option=3, float32), re-implemented: dense N x N arrays."""
    import faiss

    n = x.shape[0]
    _, initial_rank = faiss.knn(x, x, k1, metric=faiss.METRIC_L2)  # SpCL: IndexFlatL2, k1 incl. self

    def k_reciprocal(i: int, k: int) -> np.ndarray:
        fwd = initial_rank[i, :k + 1]
        back = initial_rank[fwd, :k + 1]
        return fwd[np.where(back == i)[0]]

    half = int(np.around(k1 / 2))
    nn_k1 = [k_reciprocal(i, k1) for i in range(n)]
    nn_half = [k_reciprocal(i, half) for i in range(n)]
    v = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        r = nn_k1[i]
        e = r
        for c in r:
            rc = nn_half[c]
            if len(np.intersect1d(rc, r)) > 2 / 3 * len(rc):
                e = np.append(e, rc)
        e = np.unique(e)
        neg = -(2 - 2 * (x[e] @ x[i]))
        w = np.exp(neg - neg.max())
        v[i, e] = w / w.sum()
    del nn_k1, nn_half
    if k2 != 1:
        v_qe = np.zeros_like(v)
        for i in range(n):
            v_qe[i, :] = np.mean(v[initial_rank[i, :k2], :], axis=0)
        v = v_qe
        del v_qe
    # inverted index (SpCL: np.where(V[:, i] != 0) per column) from one nonzero scan
    rows, cols = np.nonzero(v)
    order = np.argsort(cols, kind="stable")
    inv_rows = rows[order]
    inv_ptr = np.searchsorted(cols[order], np.arange(n + 1))
    del rows, cols, order
    jac = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        temp_min = np.zeros(n, dtype=np.float32)
        nz = np.where(v[i, :] != 0)[0]
        for k in nz:
            imgs = inv_rows[inv_ptr[k]:inv_ptr[k + 1]]
            temp_min[imgs] = temp_min[imgs] + np.minimum(v[i, k], v[imgs, k])
        jac[i] = 1 - temp_min / (2 - temp_min)
    del v
    jac[jac < 0] = 0.0
    return jac


# ------------------------------------------------------------------------------------------- k-means reference
def reference_kmeans_plus_plus(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The project's k-means++ before the torch rewrite (pseudo_labels/clustering.py up to 0aafdbd), verbatim:
    greedy seeding, one matrix-vector product of the (N, D) features per candidate set, in numpy."""
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    trials = 2 + int(np.log(k))
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = rng.integers(n)
    d2 = np.maximum(2.0 - 2.0 * (x @ x[chosen[0]]).astype(np.float64), 0.0)
    for j in range(1, k):
        total = d2.sum()
        if total <= 0:
            chosen[j:] = rng.integers(n, size=k - j)
            break
        cand = rng.choice(n, size=trials, p=d2 / total)
        cand_d2 = np.minimum(d2[:, None], np.maximum(2.0 - 2.0 * (x @ x[cand].T).astype(np.float64), 0.0))
        best = int(np.argmin(cand_d2.sum(axis=0)))
        chosen[j], d2 = cand[best], cand_d2[:, best]
    return np.ascontiguousarray(x[chosen])


def reference_kmeans(x: np.ndarray, k: int, seed: int = 1, niter: int = 100) -> np.ndarray:
    """The project's k-means before the torch rewrite: the seeding above, then faiss's Lloyd (``niter``), labels
    of the final centres."""
    import faiss

    km = faiss.Kmeans(x.shape[1], int(k), niter=int(niter), seed=int(seed), max_points_per_centroid=max(x.shape[0], 1),
                      verbose=False)
    km.train(x, init_centroids=reference_kmeans_plus_plus(x, int(k), seed))
    _, assign = km.index.search(x, 1)
    return assign[:, 0].astype(np.int64)


def inertia(x: np.ndarray, labels: np.ndarray) -> float:
    """Sum of squared distances of the rows of ``x`` to their cluster's mean."""
    k = int(labels.max()) + 1
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    means = sums / np.maximum(np.bincount(labels, minlength=k), 1)[:, None]
    return float(((x - means[labels]) ** 2).sum())


def compare_kmeans(n: int, k: int, dim: int, seeds: List[int], data_seed: int) -> List[Dict[str, Any]]:
    """Today's and the previous k-means on the same synthetic features: seconds, label quality against the
    true identities, inertia, and the ARI between the two."""
    import inclr_fastreid.pseudo_labels as pl
    from inclr_fastreid.pseudo_labels.clustering import cluster_kmeans
    from sklearn.metrics import adjusted_rand_score

    x = synthetic_features(n, dim, 0, data_seed)
    truth = synthetic_identities(n, data_seed)
    t0 = time.perf_counter()
    pl.knn_search(x, 30, normalize=False)
    knn_s = time.perf_counter() - t0
    rows = []
    for seed in seeds:
        row: Dict[str, Any] = {"n": n, "k": k, "seed": seed, "knn_s": knn_s}
        for name, fn in (("previous", lambda: reference_kmeans(x, k, seed)),
                         ("torch", lambda: cluster_kmeans(x, k, seed=seed))):
            t0 = time.perf_counter()
            labels = fn()
            row[f"{name}_s"] = time.perf_counter() - t0
            q = pl.label_quality(labels, truth)
            row.update({f"{name}_{m}": float(q[m]) for m in ("nmi", "ari", "pairwise_fscore")})
            row[f"{name}_inertia"] = inertia(x, labels)
            row[f"{name}_labels"] = labels
        row["ari_between"] = float(adjusted_rand_score(row.pop("previous_labels"), row.pop("torch_labels")))
        rows.append(row)
        print(f"N={n} K={k} seed={seed}: " + " ".join(f"{key}={v:.4f}" if isinstance(v, float) else f"{key}={v}"
                                                       for key, v in row.items() if key not in ("n", "k", "seed")),
              flush=True)
    return rows


# ------------------------------------------------------------------------------------------- stages
def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_stage(spec: Dict[str, Any]) -> Dict[str, Any]:
    import inclr_fastreid.pseudo_labels as pl
    from sklearn.metrics import adjusted_rand_score

    # compile the numba kernels on a tiny input first: compile time is per process, not per N
    warm = synthetic_features(400, 16, 0, 0)
    pl.cluster_dbscan(pl.compute_jaccard_distance(warm, spec["k1"], spec["k2"], spec["max_distance"]))
    n, dim, seed = spec["n"], spec["dim"], spec["seed"]
    stage = spec["stage"]
    out: Dict[str, Any] = {"stage": stage, "space": spec.get("space", 0)}
    if stage == "full":
        feats = [synthetic_features(n, dim, s, seed) for s in range(spec["spaces"])]
    else:
        x = synthetic_features(n, dim, spec.get("space", 0), seed)
    out["base_mb"] = status_mib("VmRSS")
    t0 = time.perf_counter()
    if stage == "knn":
        pl.knn_search(x, spec["k1"], normalize=False)
        out["wall_s"] = out["knn_s"] = time.perf_counter() - t0
    elif stage == "step":
        sims, idx = pl.knn_search(x, spec["k1"], normalize=False)
        t1 = time.perf_counter()
        dist = pl.jaccard_from_knn(x, sims, idx, spec["k1"], spec["k2"], spec["max_distance"])
        del sims, idx
        t2 = time.perf_counter()
        labels = pl.cluster_dbscan(dist, spec["eps"], spec["min_samples"])
        t3 = time.perf_counter()
        out.update(wall_s=t3 - t0, knn_s=t1 - t0, jaccard_s=t2 - t1, dbscan_s=t3 - t2,
                   nnz_per_row=dist.nnz / n, clusters=int(labels.max() + 1),
                   outliers=int((labels < 0).sum()),
                   ari_truth=float(adjusted_rand_score(synthetic_identities(n, seed), labels)))
        if spec.get("save"):
            np.save(spec["save"] + "_labels.npy", labels)
            import scipy.sparse as sp

            sp.save_npz(spec["save"] + "_dist.npz", dist)
    elif stage == "reference":
        from sklearn.cluster import DBSCAN

        jac = dense_reference_distance(x, spec["k1"], spec["k2"])
        t1 = time.perf_counter()
        labels = DBSCAN(eps=spec["eps"], min_samples=spec["min_samples"], metric="precomputed",
                        n_jobs=-1).fit_predict(jac)
        t2 = time.perf_counter()
        out.update(wall_s=t2 - t0, jaccard_s=t1 - t0, dbscan_s=t2 - t1, clusters=int(labels.max() + 1),
                   outliers=int((labels < 0).sum()))
        if spec.get("save") and os.path.exists(spec["save"] + "_dist.npz"):
            import scipy.sparse as sp

            sparse = sp.load_npz(spec["save"] + "_dist.npz").tocoo()
            out["max_abs_diff"] = float(np.abs(sparse.data - jac[sparse.row, sparse.col]).max())
            stored = np.zeros(n, dtype=bool)
            missing = 0
            csr = sparse.tocsr()
            for i in range(n):  # row by row: no second N x N array
                stored[:] = False
                stored[csr.indices[csr.indptr[i]:csr.indptr[i + 1]]] = True
                missing += int(((jac[i] <= spec["max_distance"] - 1e-6) & ~stored).sum())
            out["missing_pairs"] = missing
            ours = np.load(spec["save"] + "_labels.npy")
            out["ari_vs_sparse"] = float(adjusted_rand_score(ours, labels))
            out["identical_labels"] = bool(np.array_equal(ours, pl.relabel_by_first_occurrence(labels)))
    elif stage == "full":
        res = pl.generate_pseudo_labels(feats[0], feats[1:], eps=spec["eps"], min_samples=spec["min_samples"],
                                        k1=spec["k1"], k2=spec["k2"], max_distance=spec["max_distance"],
                                        lgmr_enabled=True, lgmr_k=20, min_agreement=0.0)
        out.update(wall_s=time.perf_counter() - t0, clusters=res.num_classes, outliers=res.num_outliers,
                   knn_s=sum(v for k, v in res.timings.items() if k.startswith("knn_")),
                   jaccard_s=sum(v for k, v in res.timings.items() if k.startswith("jaccard_")),
                   dbscan_s=sum(v for k, v in res.timings.items() if k.startswith("dbscan_")))
    out["peak_mb"] = _peak_mb()
    return out


def spawn(spec: Dict[str, Any]) -> Dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--stage-spec", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise RuntimeError(f"stage {spec['stage']} (N={spec['n']}) failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------- main
def fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def print_table(n: int, rows: List[Dict[str, Any]], args: argparse.Namespace) -> None:
    from inclr_fastreid.pseudo_labels.jaccard import default_num_threads

    print(f"\nN={n}  D={args.dim}  k1={args.k1} k2={args.k2} eps={args.eps} min_samples={args.min_samples} "
          f"max_distance={args.max_distance}  threads={default_num_threads()}")
    head = f"{'stage':<26}{'wall s':>9}{'knn s':>8}{'jacc s':>8}{'dbscan s':>9}{'base MB':>9}{'peak MB':>9}{'+MB':>7}  notes"
    print(head)
    print("-" * len(head))
    knn = next((r for r in rows if r["stage"] == "knn"), None)
    for r in rows:
        name = {"knn": "(a) kNN only (global)", "step": f"(b) step space {r['space']}",
                "reference": "(c) dense reference", "full": "(d) generate, 4 spaces"}[r["stage"]]
        notes = []
        if r["stage"] == "step":
            notes.append(f"K={r['clusters']} out={r['outliers']} pairs/row={r['nnz_per_row']:.1f} "
                         f"ARI(truth)={r['ari_truth']:.3f}")
            notes.append(f"step/knn={r['wall_s'] / r['knn_s']:.2f}")
            if knn:
                notes.append(f"step/(a)={r['wall_s'] / knn['wall_s']:.2f}")
        if r["stage"] == "reference":
            notes.append(f"K={r['clusters']} out={r['outliers']}")
            for key in ("ari_vs_sparse", "identical_labels", "max_abs_diff", "missing_pairs"):
                if key in r:
                    notes.append(f"{key}={fmt(r[key], 6) if isinstance(r[key], float) else r[key]}")
        if r["stage"] == "full":
            notes.append(f"K={r['clusters']} out={r['outliers']}")
        print(f"{name:<26}{fmt(r.get('wall_s')):>9}{fmt(r.get('knn_s')):>8}{fmt(r.get('jaccard_s')):>8}"
              f"{fmt(r.get('dbscan_s')):>9}{fmt(r['base_mb'], 0):>9}{fmt(r['peak_mb'], 0):>9}"
              f"{fmt(r['peak_mb'] - r['base_mb'], 0):>7}  {' '.join(notes)}")
    sys.stdout.flush()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[12936, 32621],
                   help="N values (Market-1501 train 12,936; MSMT17 list_train+list_val 32,621)")
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--spaces", type=int, default=4, help="feature spaces for (b): global + parts")
    p.add_argument("--k1", type=int, default=30)
    p.add_argument("--k2", type=int, default=6)
    p.add_argument("--eps", type=float, default=0.6)
    p.add_argument("--min-samples", type=int, default=4)
    p.add_argument("--max-distance", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", action="store_true", help="also run the dense N x N reference (c)")
    p.add_argument("--reference-max-n", type=int, default=40000,
                   help="skip (c) above this N (it needs ~13 GB at N=32,621)")
    p.add_argument("--full-step", action="store_true", help="also run (d): generate_pseudo_labels, 4 spaces")
    p.add_argument("--json", default="", help="write all rows to this JSON file")
    p.add_argument("--kmeans", type=int, nargs="+", default=None, metavar="K",
                   help="instead: k-means at K (one per --sizes entry), today's torch k-means against the previous "
                        "numpy seeding + faiss Lloyd: seconds, NMI / ARI / pairwise F vs the true ids, inertia")
    p.add_argument("--kmeans-seeds", type=int, nargs="+", default=[1], help="k-means seeds for --kmeans")
    p.add_argument("--stage-spec", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.kmeans:
        if len(args.kmeans) != len(args.sizes):
            raise SystemExit("--kmeans needs one K per --sizes entry")
        rows = [r for n, k in zip(args.sizes, args.kmeans)
                for r in compare_kmeans(n, k, args.dim, args.kmeans_seeds, args.seed)]
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
        return 0

    if args.stage_spec:
        print(json.dumps(run_stage(json.loads(args.stage_spec))))
        return 0

    common = dict(dim=args.dim, k1=args.k1, k2=args.k2, eps=args.eps, min_samples=args.min_samples,
                  max_distance=args.max_distance, seed=args.seed)
    report: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            rows = [spawn(dict(common, n=n, stage="knn"))]
            save = os.path.join(tmp, f"n{n}")
            for s in range(args.spaces):
                rows.append(spawn(dict(common, n=n, stage="step", space=s, save=save if s == 0 else "")))
            if args.reference and n <= args.reference_max_n:
                rows.append(spawn(dict(common, n=n, stage="reference", space=0, save=save)))
            if args.full_step:
                rows.append(spawn(dict(common, n=n, stage="full", spaces=args.spaces)))
            print_table(n, rows, args)
            report[str(n)] = rows
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": report}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
