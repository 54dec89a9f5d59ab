"""Synthetic clustered features at a real target's size, for timing the clustering step.

About N/17 identities in look-alike groups of ~8, each row from one of 6 cameras with its own offset,
noise of varying strength, L2-normalised; deterministic from ``(seed, n)``. The spaces of one
``(n, seed)`` (global = 0, parts 1..) share identities and cameras and differ in centres and noise, as a
model's global and part features do.
"""
import numpy as np

NUM_CAMERAS = 6
#: images per identity on average: Market-1501's train set (12,936 images of 751 identities)
IMAGES_PER_ID = 17


def synthetic_identities(n: int, seed: int) -> np.ndarray:
    """The (n,) true identity of each row of :func:`synthetic_features` (0 .. n // 17 - 1)."""
    rng = np.random.default_rng([seed, n])
    return rng.integers(0, max(2, n // IMAGES_PER_ID), n)


def synthetic_camids(n: int, seed: int) -> np.ndarray:
    """The (n,) camera of each row of :func:`synthetic_features` (0..5)."""
    rng = np.random.default_rng([seed, n])
    rng.integers(0, max(2, n // IMAGES_PER_ID), n)  # the identities come first from the same stream
    return rng.integers(0, NUM_CAMERAS, n)


def synthetic_features(n: int, dim: int, space: int, seed: int) -> np.ndarray:
    """(n, dim) float32 unit rows of feature space ``space`` (0 global, 1.. parts); identities/cameras shared
    by all spaces, centres/noise per space.

    Generated in row chunks so no float64 (n, dim) temporary is ever held.
    """
    rng = np.random.default_rng([seed, n])
    ids = max(2, n // IMAGES_PER_ID)
    labels = rng.integers(0, ids, n)
    cams = rng.integers(0, NUM_CAMERAS, n)
    srng = np.random.default_rng([seed, n, space + 1])
    groups = max(1, ids // 8)
    grp = srng.standard_normal((groups, dim), dtype=np.float32)
    grp /= np.linalg.norm(grp, axis=1, keepdims=True)
    ctr = srng.standard_normal((ids, dim), dtype=np.float32)
    ctr /= np.linalg.norm(ctr, axis=1, keepdims=True)
    ctr = 0.8 * grp[srng.integers(0, groups, ids)] + ctr
    ctr /= np.linalg.norm(ctr, axis=1, keepdims=True)
    cam = srng.standard_normal((NUM_CAMERAS, dim), dtype=np.float32)
    cam *= 0.35 / np.linalg.norm(cam, axis=1, keepdims=True)
    # noise norm 2.1-3.8 x the centre's: ~2,400 pairs per row with d_J < 1, ~55 with d_J <= 0.9 at
    # N=12,936 (docs/design.md §4.3 quotes ~1,800 and ~21 on real Market-1501 features); parts noisier
    sigma = srng.uniform(2.1, 3.8, n).astype(np.float32) * (1.0 if space == 0 else 1.1)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 4096):
        e = min(n, s + 4096)
        noise = srng.standard_normal((e - s, dim), dtype=np.float32)
        noise *= (sigma[s:e] / np.sqrt(dim))[:, None]
        blk = ctr[labels[s:e]] + cam[cams[s:e]] + noise
        blk /= np.linalg.norm(blk, axis=1, keepdims=True)
        out[s:e] = blk
    return out
