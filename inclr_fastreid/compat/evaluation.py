"""FastReID's evaluation without a run-time Cython build or ``sys.exit``, and test-time re-ranking on
the CPU."""
from __future__ import annotations


import torch

from ._fix import fix as _fix


@_fix("ReidEvaluator: no run-time Cython build, vectorised ranking on the CPU")
def _evaluator() -> None:
    from fastreid.evaluation import rank as fr_rank
    from fastreid.evaluation import rank_cylib, reid_evaluation

    def compile_helper() -> None:
        raise RuntimeError(
            "inclr-fastreid does not compile FastReID's Cython ranker inside site-packages; "
            "the vectorised evaluator in inclr_fastreid.evaluation.rank is used instead."
        )

    rank_cylib.compile_helper = compile_helper
    reid_evaluation.compile_helper = compile_helper
    reid_evaluation.ReidEvaluator._compile_dependencies = lambda self: None
    if not getattr(fr_rank, "IS_CYTHON_AVAI", False):
        from ..evaluation.rank import evaluate_rank

        fr_rank.evaluate_rank = evaluate_rank
    try:
        from fastreid.evaluation import roc as fr_roc
    except ImportError:  # pragma: no cover - faiss missing
        return
    if not getattr(fr_roc, "IS_CYTHON_AVAI", False):
        from ..evaluation.roc import evaluate_roc

        fr_roc.evaluate_roc = evaluate_roc


@_fix("no sys.exit in FastReID's result checks")
def _no_sys_exit() -> None:
    from fastreid.evaluation import testing

    orig = testing.verify_results

    def verify_results(cfg, results):
        try:
            return orig(cfg, results)
        except SystemExit as e:
            raise RuntimeError("FastReID's verify_results failed (TEST.EXPECTED_RESULTS); see log") from e

    testing.verify_results = verify_results


@_fix("test-time re-ranking (TEST.RERANK) on the CPU: sparse k-reciprocal Jaccard, no GPU faiss")
def _rerank() -> None:
    """FastReID's ``build_dist(metric="jaccard")`` hard-codes GPU faiss and an old faiss API; the
    add-on's sparse Jaccard gives the same distances, and only the query x gallery block is dense."""
    import numpy as np
    from fastreid.evaluation import reid_evaluation
    from fastreid.utils import compute_dist

    orig = compute_dist.build_dist

    def build_dist(feat_1, feat_2, metric: str = "euclidean", **kwargs):
        if metric != "jaccard":
            return orig(feat_1, feat_2, metric, **kwargs)
        from ..pseudo_labels import compute_jaccard_distance

        nq = feat_1.shape[0]
        feats = torch.cat((torch.as_tensor(feat_1), torch.as_tensor(feat_2)), dim=0).float().cpu()
        sparse = compute_jaccard_distance(feats.numpy(), k1=kwargs["k1"], k2=kwargs["k2"], max_distance=1.0)
        block = sparse[:nq, nq:].tocoo()  # pairs not stored share no support: d_J = 1
        dist = np.ones((nq, feats.shape[0] - nq), dtype=np.float32)
        dist[block.row, block.col] = block.data
        return dist

    compute_dist.build_dist = build_dist
    reid_evaluation.build_dist = build_dist
