"""The synthetic domains (docs/design.md §7): what makes each one, their sizes, and every image they
hold, as pure functions of the seed (nothing here touches the disk; ``cache.py`` writes the images).

- ``SynthA`` (source in our configs): saturated palette, bright outdoor-like scenes, mild camera
  casts, little blur and noise.
- ``SynthB`` (target): muted, hue-shifted palette with many neutral garments, darker scenes,
  strong colour casts, more blur, noise and occlusion, people appear smaller in the box.
- ``SynthC`` (spare): pastel palette, low light with heavy noise.

Each domain owns a disjoint pid block (A: 1-2999, B: 3001-5999, C: 6001-8999) and its own random
streams, ``SeedSequence(seed, spawn_key=(domain index, stream, ...))``.

Sizes: the dataset constructor's kwargs, else environment variables, else the defaults below.
  ``INCLR_SYNTH_SCALE``  float, multiplies the identity counts (e.g. 0.1 for a tiny version)
  ``INCLR_SYNTH_SEED``   int, base seed (each domain derives its own stream from it)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from .render import CameraModel, CameraSpec, Identity, Palette, render_person, sample_camera, sample_identity

__all__ = ["SPLITS", "PID_BLOCK", "DEFAULT_NUM_TRAIN_IDS", "DEFAULT_NUM_TEST_IDS", "DEFAULT_NUM_DISTRACTOR_IDS",
           "DEFAULT_NUM_CAMS", "DEFAULT_TRAIN_IMAGES", "DEFAULT_TEST_IMAGES", "DISTRACTOR_IMAGES", "DomainSpec",
           "DOMAINS", "SynthParams", "resolve_params", "domain_identity", "domain_cameras", "domain_image",
           "build_plan"]

SPLITS = ("bounding_box_train", "query", "bounding_box_test")
PID_BLOCK = 3000

DEFAULT_NUM_TRAIN_IDS = 120
DEFAULT_NUM_TEST_IDS = 100
DEFAULT_NUM_DISTRACTOR_IDS = 10
DEFAULT_NUM_CAMS = 6
DEFAULT_TRAIN_IMAGES = (12, 24)  # images per training identity, inclusive range
DEFAULT_TEST_IMAGES = (12, 18)  # images per test identity (query + gallery), inclusive range
DISTRACTOR_IMAGES = (2, 5)

# random streams: SeedSequence(seed, spawn_key=(domain index, stream, ...))
_STREAM_IDENTITY, _STREAM_CAMERA, _STREAM_PLAN, _STREAM_IMAGE = 1, 2, 3, 4


@dataclass(frozen=True)
class DomainSpec:
    """What makes a domain: its palette, its camera distribution, its index (seed stream, pids)."""

    name: str
    index: int
    palette: Palette
    cameras: CameraSpec


DOMAINS: Dict[str, DomainSpec] = {
    "SynthA": DomainSpec(
        "SynthA", 0,
        Palette(sat=(0.55, 1.0), val=(0.45, 1.0), neutral_prob=0.15),
        CameraSpec(gain=(0.75, 1.2), cast=0.2, gamma=(0.9, 1.1), blur=(0.2, 1.2),
                   noise=(0.02, 0.05), shade=0.2, occlusion=(0.1, 0.25), scale=(0.84, 0.98),
                   bg_val=(0.5, 0.9), bg_sat=(0.1, 0.45), gain_jitter=0.15),
    ),
    "SynthB": DomainSpec(
        "SynthB", 1,
        Palette(sat=(0.3, 0.7), val=(0.3, 0.85), hue_centers=(0.03, 0.09, 0.17, 0.6, 0.95),
                hue_spread=0.04, hue_uniform_prob=0.5, neutral_prob=0.2, neutral_val=(0.05, 0.8)),
        CameraSpec(gain=(0.75, 1.1), cast=0.15, gamma=(0.8, 1.3), blur=(0.3, 1.2),
                   noise=(0.025, 0.05), shade=0.4, occlusion=(0.1, 0.3), scale=(0.78, 0.94),
                   bg_val=(0.2, 0.6), bg_sat=(0.0, 0.3)),
    ),
    "SynthC": DomainSpec(
        "SynthC", 2,
        Palette(sat=(0.2, 0.55), val=(0.6, 1.0), neutral_prob=0.15, neutral_val=(0.3, 1.0)),
        CameraSpec(gain=(0.55, 0.9), cast=0.15, gamma=(1.0, 1.3), blur=(0.2, 1.0),
                   noise=(0.04, 0.07), shade=0.3, occlusion=(0.1, 0.2), scale=(0.8, 0.96),
                   bg_val=(0.15, 0.5), bg_sat=(0.05, 0.4)),
    ),
}


@dataclass(frozen=True)
class SynthParams:
    """Sizes and seed of one rendered domain (part of the cache key)."""

    seed: int = 0
    num_train_ids: int = DEFAULT_NUM_TRAIN_IDS
    num_test_ids: int = DEFAULT_NUM_TEST_IDS
    num_distractor_ids: int = DEFAULT_NUM_DISTRACTOR_IDS
    num_cams: int = DEFAULT_NUM_CAMS
    train_images: Tuple[int, int] = DEFAULT_TRAIN_IMAGES
    test_images: Tuple[int, int] = DEFAULT_TEST_IMAGES

    def validate(self) -> None:
        """Raise ValueError naming the bad size."""
        if not 3 <= self.num_cams <= 9:
            raise ValueError(f"num_cams={self.num_cams}: need 3..9 cameras (a test identity spans "
                             f">= 3 cameras; file names use one digit)")
        if self.num_train_ids < 1 or self.num_test_ids < 1 or self.num_distractor_ids < 0:
            raise ValueError(f"identity counts must be >= 1 (train, test) and >= 0 (distractors); got "
                             f"{self.num_train_ids}, {self.num_test_ids}, {self.num_distractor_ids}")
        total = self.num_train_ids + self.num_test_ids + self.num_distractor_ids
        if total >= PID_BLOCK:
            raise ValueError(f"{total} identities per domain exceed the pid block of {PID_BLOCK - 1}; "
                             f"lower INCLR_SYNTH_SCALE or the identity counts")
        lo, hi = self.train_images
        if not 2 <= lo <= hi:
            raise ValueError(f"train_images={self.train_images}: need 2 <= low <= high")
        lo, hi = self.test_images
        if not 4 <= lo <= hi:
            raise ValueError(f"test_images={self.test_images}: need 4 <= low <= high (query + gallery "
                             f"over >= 3 cameras)")


def _env(name: str, cast):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return cast(raw)
    except ValueError as e:
        raise ValueError(f"environment variable {name}={raw!r} is not a valid {cast.__name__}") from e


def resolve_params(seed: Optional[int] = None, scale: Optional[float] = None,
                   num_train_ids: Optional[int] = None, num_test_ids: Optional[int] = None,
                   num_distractor_ids: Optional[int] = None, num_cams: Optional[int] = None,
                   train_images: Optional[Tuple[int, int]] = None,
                   test_images: Optional[Tuple[int, int]] = None) -> SynthParams:
    """Sizes from kwargs, else INCLR_SYNTH_SCALE / INCLR_SYNTH_SEED, else defaults (validated).

    ``scale`` multiplies the default identity counts; explicit counts are taken as given.
    """
    if seed is None:
        seed = _env("INCLR_SYNTH_SEED", int)
    if scale is None:
        scale = _env("INCLR_SYNTH_SCALE", float)
    scale = 1.0 if scale is None else float(scale)
    if not scale > 0:
        raise ValueError(f"synthetic dataset scale must be > 0, got {scale} (INCLR_SYNTH_SCALE or scale=)")

    def scaled(given: Optional[int], default: int, minimum: int) -> int:
        return int(given) if given is not None else max(minimum, int(round(default * scale)))

    p = SynthParams(
        seed=int(seed or 0),
        num_train_ids=scaled(num_train_ids, DEFAULT_NUM_TRAIN_IDS, 2),
        num_test_ids=scaled(num_test_ids, DEFAULT_NUM_TEST_IDS, 2),
        num_distractor_ids=scaled(num_distractor_ids, DEFAULT_NUM_DISTRACTOR_IDS, 0),
        num_cams=int(num_cams) if num_cams is not None else DEFAULT_NUM_CAMS,
        train_images=tuple(int(x) for x in (train_images or DEFAULT_TRAIN_IMAGES)),
        test_images=tuple(int(x) for x in (test_images or DEFAULT_TEST_IMAGES)),
    )
    if p.seed < 0:
        raise ValueError(f"seed must be >= 0, got {p.seed}")
    p.validate()
    return p


def _rng(params: SynthParams, spec: DomainSpec, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(params.seed, spawn_key=(spec.index, *key)))


def domain_identity(spec: DomainSpec, params: SynthParams, pid: int) -> Identity:
    """The appearance of identity ``pid`` of a domain (a pure function of seed, domain, pid)."""
    return sample_identity(_rng(params, spec, _STREAM_IDENTITY, pid), spec.palette)


def domain_cameras(spec: DomainSpec, params: SynthParams) -> List[CameraModel]:
    """The domain's camera models, index c-1 for camera c."""
    return [sample_camera(_rng(params, spec, _STREAM_CAMERA, c), spec.cameras)
            for c in range(1, params.num_cams + 1)]


def domain_image(spec: DomainSpec, params: SynthParams, identity: Identity, camera: CameraModel, pid: int,
                 frame: int) -> np.ndarray:
    """Image ``frame`` of identity ``pid`` (its appearance ``identity``) seen by ``camera``: (128, 64, 3) uint8."""
    return render_person(identity, camera, _rng(params, spec, _STREAM_IMAGE, pid, frame))


def _assign_cameras(rng: np.random.Generator, n_images: int, cams: np.ndarray) -> np.ndarray:
    """Camera of each image: every camera in ``cams`` at least once, the rest uniformly."""
    extra = rng.choice(cams, size=n_images - len(cams))
    out = np.concatenate([cams, extra])
    rng.shuffle(out)
    return out


def build_plan(spec: DomainSpec, params: SynthParams) -> Dict[str, List[Tuple[int, int, int]]]:
    """(pid, cam, frame) of every image of every split, cam 1-based; frames unique per pid."""
    base = spec.index * PID_BLOCK
    plan: Dict[str, List[Tuple[int, int, int]]] = {s: [] for s in SPLITS}
    nc = params.num_cams
    all_cams = np.arange(1, nc + 1)
    for k in range(params.num_train_ids):
        pid = base + 1 + k
        rng = _rng(params, spec, _STREAM_PLAN, pid)
        n = int(rng.integers(params.train_images[0], params.train_images[1] + 1))
        ncam = int(rng.integers(2, min(nc, n) + 1))
        cams = _assign_cameras(rng, n, np.sort(rng.choice(all_cams, ncam, replace=False)))
        plan["bounding_box_train"] += [(pid, int(c), f) for f, c in enumerate(cams)]
    for k in range(params.num_test_ids):
        pid = base + 1 + params.num_train_ids + k
        rng = _rng(params, spec, _STREAM_PLAN, pid)
        n = int(rng.integers(params.test_images[0], params.test_images[1] + 1))
        ncam = int(rng.integers(3, min(nc, n) + 1))
        id_cams = np.sort(rng.choice(all_cams, ncam, replace=False))
        cams = _assign_cameras(rng, n, id_cams)
        q_cams = set(int(c) for c in rng.choice(id_cams, int(rng.integers(1, 3)), replace=False))
        for f, c in enumerate(cams):
            split = "query" if int(c) in q_cams else "bounding_box_test"
            if split == "query":
                q_cams.discard(int(c))  # one query per (identity, query camera)
            plan[split].append((pid, int(c), f))
    for k in range(params.num_distractor_ids):
        pid = base + 1 + params.num_train_ids + params.num_test_ids + k
        rng = _rng(params, spec, _STREAM_PLAN, pid)
        n = int(rng.integers(DISTRACTOR_IMAGES[0], DISTRACTOR_IMAGES[1] + 1))
        cams = rng.choice(all_cams, n)
        plan["bounding_box_test"] += [(pid, int(c), f) for f, c in enumerate(cams)]
    return plan
