"""Synthetic features with a known identity structure, and the dense k-reciprocal Jaccard distance straight from
its definition (Zhong et al. CVPR 2017 with SpCL's list lengths), the reference the sparse code is checked against."""
import numpy as np


def clustered(n=300, d=32, ids=20, noise=0.6, seed=0):
    """``n`` float32 features in R^d around ``ids`` Gaussian centres (``noise``: the spread), and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, d))
    lab = rng.integers(0, ids, n)
    return (centres[lab] + noise * rng.normal(size=(n, d))).astype(np.float32), lab


def identities(ids=120, per_id=7, spread=0.8, parts=3, dim=64, seed=0, with_cams=False):
    """Spaces (global, part1..) of Gaussian identities on the unit sphere, in look-alike groups of ~8 with a
    camera offset; the parts see the same identities with their own centres and noisier (1.15 x) features.
    ``with_cams``: also the (N,) camera ids."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(ids), per_id)
    cam = rng.integers(0, 6, labels.size)
    spaces = []
    for s in range(1 + parts):
        grp = rng.standard_normal((ids // 8, dim))
        grp /= np.linalg.norm(grp, axis=1, keepdims=True)
        ctr = rng.standard_normal((ids, dim))
        ctr /= np.linalg.norm(ctr, axis=1, keepdims=True)
        ctr = 0.8 * grp[rng.integers(0, ids // 8, ids)] + ctr
        ctr /= np.linalg.norm(ctr, axis=1, keepdims=True)
        off = rng.standard_normal((6, dim))
        off *= 0.3 / np.linalg.norm(off, axis=1, keepdims=True)
        x = ctr[labels] + off[cam] + rng.standard_normal((labels.size, dim)) * (spread * (1 + 0.15 * (s > 0)) / np.sqrt(dim))
        spaces.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return (spaces, labels, cam) if with_cams else (spaces, labels)


def dense_reference(x, k1, k2):
    """Dense N x N k-reciprocal Jaccard distance, float64, straight from the definition."""
    x = np.asarray(x, np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    n = len(x)
    dist = 2.0 - 2.0 * x @ x.T  # squared Euclidean distance of unit vectors
    np.fill_diagonal(dist, 0.0)
    rank = np.argsort(dist, axis=1, kind="stable")[:, :k1]  # k1 entries, self first
    half = int(np.around(k1 / 2)) + 1

    def recip(i, k):
        return [j for j in rank[i, :k] if i in rank[j, :k]]

    v = np.zeros((n, n))
    for i in range(n):
        r_i = recip(i, k1)
        e = set(r_i)
        for c in r_i:
            r_c = recip(c, half)
            if len(set(r_c) & set(r_i)) > 2 / 3 * len(r_c):
                e |= set(r_c)
        e = np.array(sorted(e))
        w = np.exp(-dist[i, e])
        v[i, e] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    s = np.stack([np.minimum(v[i], v).sum(axis=1) for i in range(n)])
    d = 1.0 - s / (2.0 - s)
    d[d < 0] = 0.0
    return d
