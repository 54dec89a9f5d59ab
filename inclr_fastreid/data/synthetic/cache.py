"""A synthetic domain on disk (docs/design.md §7): rendered once into
``<root>/synthetic/<Name>_s<seed>_v<FORMAT_VERSION>[_<hash>]/`` (the hash suffix appears only when
sizes differ from the defaults) and reused after that.

Market-1501 layout: ``bounding_box_train``, ``query``, ``bounding_box_test`` with files named
``{pid:04d}_c{cam}s1_{frame:06d}_00.png`` (cam 1-based). Everything is a function of the seed: the
same seed gives the same bytes in every file. Rendering goes to a temporary folder beside the final
one that is renamed into place, so concurrent processes are safe; a ``DONE`` manifest (format
version, sizes, file counts) marks a complete copy.
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
from dataclasses import asdict
from typing import Any, Dict

import numpy as np
from PIL import Image

from ...errors import DatasetError
from .domains import SPLITS, DomainSpec, SynthParams, build_plan, domain_cameras, domain_identity, domain_image
from .render import Identity

__all__ = ["FORMAT_VERSION", "FILE_RE", "DONE_FILE", "file_name", "write_png", "render_domain", "cache_dir_name",
           "SyntheticDatasetError", "ensure_domain"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
FILE_RE = re.compile(r"^(\d+)_c(\d+)s(\d+)_(\d+)_(\d+)\.png$")
DONE_FILE = "DONE"


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
            img = domain_image(spec, params, idn, cameras[cam - 1], pid, frame)
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
