"""Synthetic domain-shift re-ID benchmark (docs/design.md §7), registered in FastReID's DATASET_REGISTRY.

Three domains of procedurally rendered pedestrians (``render.py``) with disjoint identities:

- ``SynthA`` (source in our configs): saturated palette, bright outdoor-like scenes, mild camera
  casts, little blur and noise.
- ``SynthB`` (target): muted, hue-shifted palette with many neutral garments, darker scenes,
  strong colour casts, more blur, noise and occlusion, people appear smaller in the box.
- ``SynthC`` (spare): pastel palette, low light with heavy noise.
- ``SynthB10``: SynthB at a lower density, at most 10 training images per identity (a seeded random
  subset of SynthB's training split, ~Market's 12.9 and Duke's 23.5 images per training id halved);
  same rendering, same query / gallery.

Market-1501 layout: ``bounding_box_train``, ``query``, ``bounding_box_test`` with files named
``{pid:04d}_c{cam}s1_{frame:06d}_00.png`` (cam 1-based). Every test identity appears in query
(one image from each of 1-2 of its cameras) and in the gallery (its other images, including at
least one camera no query of it uses); distractor identities appear in the gallery only.
All pids are >= 1; each domain owns a disjoint pid block (A: 1-2999, B: 3001-5999, C: 6001-8999).

Everything is a function of the seed: the same seed gives the same bytes in every file. A domain
is rendered once into ``<root>/synthetic/<Name>_s<seed>_v<FORMAT_VERSION>[_<hash>]/`` (the hash
suffix appears only when sizes differ from the defaults) and reused after that. Rendering goes to
a temporary folder beside it that is renamed into place, so concurrent processes are safe.

Sizes: constructor kwargs, else environment variables, else the defaults below.
  ``INCLR_SYNTH_SCALE``  float, multiplies the identity counts (e.g. 0.1 for a tiny version)
  ``INCLR_SYNTH_SEED``   int, base seed (each domain derives its own stream from it)
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.bases import ImageDataset

from ...errors import DatasetError
from ...registry import register_once
from .render import CameraSpec, Identity, Palette, render_person, sample_camera, sample_identity

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("bounding_box_train", "query", "bounding_box_test")
FILE_RE = re.compile(r"^(\d+)_c(\d+)s(\d+)_(\d+)_(\d+)\.png$")
DONE_FILE = "DONE"
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


def domain_cameras(spec: DomainSpec, params: SynthParams) -> List[Any]:
    """The domain's camera models, index c-1 for camera c."""
    return [sample_camera(_rng(params, spec, _STREAM_CAMERA, c), spec.cameras)
            for c in range(1, params.num_cams + 1)]


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


def file_name(pid: int, cam: int, frame: int) -> str:
    """Market-1501 style name: ``0001_c1s1_000123_00.png``."""
    return f"{pid:04d}_c{cam}s1_{frame:06d}_00.png"


def write_png(path: str, img: np.ndarray) -> None:
    """PNG with fixed settings (no metadata), so equal arrays give equal bytes."""
    Image.fromarray(img, mode="RGB").save(path, format="PNG", compress_level=6, optimize=False)


def render_domain(spec: DomainSpec, params: SynthParams, out_dir: str) -> Dict[str, int]:
    """Render every image of a domain into ``out_dir`` (the three split folders); file counts."""
    plan = build_plan(spec, params)
    cameras = domain_cameras(spec, params)
    identities: Dict[int, Identity] = {}
    counts = {}
    for split in SPLITS:
        d = os.path.join(out_dir, split)
        os.makedirs(d, exist_ok=True)
        for pid, cam, frame in plan[split]:
            idn = identities.get(pid)
            if idn is None:
                idn = identities[pid] = domain_identity(spec, params, pid)
            img = render_person(idn, cameras[cam - 1], _rng(params, spec, _STREAM_IMAGE, pid, frame))
            write_png(os.path.join(d, file_name(pid, cam, frame)), img)
        counts[split] = len(plan[split])
    return counts


def _manifest(spec: DomainSpec, params: SynthParams, counts: Dict[str, int]) -> Dict[str, Any]:
    return {"name": spec.name, "format_version": FORMAT_VERSION, "params": _params_json(params),
            "counts": counts}


def _params_json(params: SynthParams) -> Dict[str, Any]:
    d = asdict(params)
    d["train_images"] = list(params.train_images)
    d["test_images"] = list(params.test_images)
    return d


def cache_dir_name(spec: DomainSpec, params: SynthParams) -> str:
    """``<Name>_s<seed>_v<FORMAT_VERSION>``, plus ``_<hash>`` of the sizes when not the defaults."""
    name = f"{spec.name}_s{params.seed}_v{FORMAT_VERSION}"
    if params != SynthParams(seed=params.seed):
        sizes = {k: v for k, v in _params_json(params).items() if k != "seed"}
        name += "_" + hashlib.sha1(json.dumps(sizes, sort_keys=True).encode()).hexdigest()[:8]
    return name


class SyntheticDatasetError(DatasetError, RuntimeError):
    """A synthetic dataset folder is broken, rendered with other settings, or cannot be written."""


def _check_cached(path: str, spec: DomainSpec, params: SynthParams) -> bool:
    """True if ``path`` holds a complete rendering of these params; raises if it holds a broken one."""
    if not os.path.isdir(path):
        return False
    done = os.path.join(path, DONE_FILE)
    hint = f"delete {path!r} to render it again"
    if not os.path.isfile(done):
        raise SyntheticDatasetError(f"synthetic dataset folder {path!r} has no {DONE_FILE} marker (not written by "
                           f"this code, or copied incompletely); {hint}")
    with open(done) as f:
        manifest = json.load(f)
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("params") != _params_json(params):
        raise SyntheticDatasetError(f"synthetic dataset folder {path!r} was rendered with other settings "
                           f"({manifest.get('params')}); {hint}")
    for split in SPLITS:
        n = len(glob.glob(os.path.join(path, split, "*.png")))
        if n != manifest["counts"][split]:
            raise SyntheticDatasetError(f"synthetic dataset folder {path!r}: {split} holds {n} images, expected "
                               f"{manifest['counts'][split]}; {hint}")
    return True


def ensure_domain(root: str, spec: DomainSpec, params: SynthParams) -> str:
    """Path of the rendered domain under ``<root>/synthetic/``, rendering it first if absent.

    Safe with concurrent processes: each renders into its own temporary folder and renames it
    into place; the loser of a race discards its copy.
    """
    parent = os.path.join(root, "synthetic")
    final = os.path.join(parent, cache_dir_name(spec, params))
    if _check_cached(final, spec, params):
        logger.info(f"Using cached synthetic domain {spec.name} at {final}")
        return final
    tmp = os.path.join(parent, f".{os.path.basename(final)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.makedirs(tmp)
    except OSError as e:
        raise SyntheticDatasetError(f"cannot write the synthetic dataset under {parent!r} ({e.strerror}); pass a "
                           f"writable root= or set FASTREID_DATASETS to a writable folder") from e
    try:
        t0 = time.perf_counter()
        logger.info(f"Rendering synthetic domain {spec.name} (seed {params.seed}) into {final} ...")
        counts = render_domain(spec, params, tmp)
        with open(os.path.join(tmp, DONE_FILE), "w") as f:
            json.dump(_manifest(spec, params, counts), f, indent=1, sort_keys=True)
        try:
            os.rename(tmp, final)
            logger.info(f"Rendered {sum(counts.values())} images of {spec.name} in "
                        f"{time.perf_counter() - t0:.1f}s")
        except OSError:
            if not os.path.isdir(final):
                raise
            logger.info(f"Another process rendered {final} first; using its copy")
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    if not _check_cached(final, spec, params):
        raise RuntimeError(f"synthetic dataset {final!r} missing after rendering")
    return final


def cap_images_per_identity(items: List[Tuple[str, Any, Any]], cap: int, seed: int) -> List[Tuple[str, Any, Any]]:
    """At most ``cap`` items per pid, drawn at random (seeded, so every run sees the same subset), in input order."""
    rng = np.random.default_rng([seed, cap])
    by_pid: Dict[Any, List[int]] = {}
    for i, (_, pid, _) in enumerate(items):
        by_pid.setdefault(pid, []).append(i)
    keep = sorted(j for pid in sorted(by_pid, key=str) for j in rng.permutation(by_pid[pid])[:cap].tolist())
    return [items[j] for j in keep]


class SyntheticReID(ImageDataset):
    """Base of the registered synthetic domains; subclasses set ``domain`` (a key of DOMAINS).

    Args:
        root: FastReID datasets root; the domain is cached under ``<root>/synthetic/``.
        seed, scale, num_train_ids, num_test_ids, num_distractor_ids, num_cams, train_images,
        test_images: sizes (see ``resolve_params``; env INCLR_SYNTH_SCALE / INCLR_SYNTH_SEED).
        **kwargs: passed to FastReID's ImageDataset (mode, combineall, verbose, ...).
    """

    domain = ""
    dataset_name = ""
    max_train_images_per_id = 0  # > 0: keep a seeded random subset of at most this many per identity
    _junk_pids: List[int] = []

    def __init__(self, root: str = "datasets", seed: Optional[int] = None, scale: Optional[float] = None,
                 num_train_ids: Optional[int] = None, num_test_ids: Optional[int] = None,
                 num_distractor_ids: Optional[int] = None, num_cams: Optional[int] = None,
                 train_images: Optional[Tuple[int, int]] = None,
                 test_images: Optional[Tuple[int, int]] = None, **kwargs: Any):
        self.spec = DOMAINS[self.domain]
        self.params = resolve_params(seed, scale, num_train_ids, num_test_ids, num_distractor_ids,
                                     num_cams, train_images, test_images)
        self.root = root
        self.dataset_dir = ensure_domain(root, self.spec, self.params)
        self.train_dir = os.path.join(self.dataset_dir, "bounding_box_train")
        self.query_dir = os.path.join(self.dataset_dir, "query")
        self.gallery_dir = os.path.join(self.dataset_dir, "bounding_box_test")
        train = self.process_dir(self.train_dir, is_train=True)
        if self.max_train_images_per_id > 0:
            train = cap_images_per_identity(train, self.max_train_images_per_id, self.params.seed)
        query = self.process_dir(self.query_dir, is_train=False)
        gallery = self.process_dir(self.gallery_dir, is_train=False)
        super().__init__(train, query, gallery, **kwargs)

    def process_dir(self, dir_path: str, is_train: bool = True) -> List[Tuple[str, Any, Any]]:
        """(path, pid, camid) sorted by name; camid 0-based; train pids/camids prefixed as Market's."""
        data = []
        for name in sorted(os.listdir(dir_path)):
            m = FILE_RE.match(name)
            if m is None:
                continue
            pid, camid = int(m.group(1)), int(m.group(2)) - 1
            if is_train:
                data.append((os.path.join(dir_path, name), f"{self.dataset_name}_{pid}",
                             f"{self.dataset_name}_{camid}"))
            else:
                data.append((os.path.join(dir_path, name), pid, camid))
        return data


@register_once(DATASET_REGISTRY)
class SynthA(SyntheticReID):
    """Synthetic source domain: saturated palette, clean bright cameras."""

    domain = dataset_name = "SynthA"


@register_once(DATASET_REGISTRY)
class SynthB(SyntheticReID):
    """Synthetic target domain: muted shifted palette, strong casts, blur, noise, occlusion."""

    domain = dataset_name = "SynthB"


@register_once(DATASET_REGISTRY)
class SynthC(SyntheticReID):
    """Third synthetic domain: pastel palette, low light, heavy noise."""

    domain = dataset_name = "SynthC"


@register_once(DATASET_REGISTRY)
class SynthB10(SyntheticReID):
    """SynthB with at most 10 training images per identity (a lower-density target; same test split)."""

    domain = "SynthB"
    dataset_name = "SynthB10"
    max_train_images_per_id = 10
