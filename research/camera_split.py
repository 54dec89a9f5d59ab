#!/usr/bin/env python
"""Do the pseudo labels split identities by camera? For features dumped by ``tools/cluster_quality.py
--dump-features`` (arrays global, part1.., ids, camids): cluster with DBSCAN, EPS_RULE auto (its default
AUTO_COVERAGE), k1 20, with and without INCLR.CLUSTER.CAMERA_NORM, and print the share of clusters that
hold a single camera and the recall of an identity's same-camera vs cross-camera image pairs.

    python research/camera_split.py output/seed1_src.npz
"""
from __future__ import annotations

import os
import sys

import numpy as np

from inclr_fastreid.pseudo_labels import generate_pseudo_labels
from inclr_fastreid.pseudo_labels.params import ClusterParams
from inclr_fastreid.pseudo_labels.quality import camera_pair_recall


def single_camera_share(labels: np.ndarray, camids: np.ndarray) -> float:
    """Share of the clusters whose images all come from one camera."""
    ks = [k for k in np.unique(labels) if k >= 0]
    return float(np.mean([len(np.unique(camids[labels == k])) == 1 for k in ks])) if ks else 0.0


def main() -> None:
    for path in sys.argv[1:]:
        z = np.load(path)
        ids, cams = z["ids"], z["camids"]
        parts = [z[k] for k in sorted(z.files) if k.startswith("part")]
        for norm in (False, True):
            r = generate_pseudo_labels(z["global"], parts, ClusterParams(eps_rule="auto", k1=20, camera_norm=norm),
                                       camids=cams)
            lab = r.labels_before_lgmr
            same, cross = camera_pair_recall(lab, ids, cams)
            print(f"{os.path.basename(path)} CAMERA_NORM {norm}: eps {r.eps:.2f}, K {int(lab.max()) + 1}, outliers "
                  f"{int((lab < 0).sum())}, single-camera clusters {single_camera_share(lab, cams):.2f}, recall of "
                  f"same-camera pairs {same:.2f}, of cross-camera pairs {cross:.2f}")


if __name__ == "__main__":
    main()
