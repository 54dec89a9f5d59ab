"""Pseudo-label engine (docs/design.md §4.3-4.6): sparse k-reciprocal Jaccard distance, clusterers
(DBSCAN, k-means), LGMR cross-agreement and refinement, and label-quality metrics. Pure functions over
numpy/torch arrays; no FastReID state.
"""
from .agreement import (AGREEMENTS, agreement_mode, cluster_overlap, cross_agreement, knn_overlap,
                        neighbour_overlap, refine_global_labels)
from .clustering import CLUSTERERS, FeatureSpace, cluster_centroids, cluster_dbscan, clusterer, relabel_by_first_occurrence
from .generate import PseudoLabels, camera_normalize, generate_pseudo_labels
from .jaccard import compute_jaccard_distance, jaccard_from_knn
from .knn import knn_search, l2_normalize
from .params import ClusterParams, cluster_params_from_cfg
from .quality import credibility_auroc, label_quality, pairwise_prf, pseudo_label_correct

__all__ = [
    "PseudoLabels", "generate_pseudo_labels", "camera_normalize",
    "compute_jaccard_distance", "jaccard_from_knn", "knn_search", "l2_normalize",
    "CLUSTERERS", "clusterer", "FeatureSpace", "ClusterParams", "cluster_params_from_cfg",
    "cluster_dbscan", "cluster_centroids", "relabel_by_first_occurrence",
    "AGREEMENTS", "agreement_mode", "knn_overlap", "neighbour_overlap", "cluster_overlap", "cross_agreement", "refine_global_labels",
    "pairwise_prf", "label_quality", "pseudo_label_correct", "credibility_auroc",
]
