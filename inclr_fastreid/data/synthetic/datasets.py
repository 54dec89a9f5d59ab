"""Synthetic domain-shift re-ID benchmark (docs/design.md §7), registered in FastReID's DATASET_REGISTRY.

Three domains of procedurally rendered pedestrians (``render.py``) with disjoint identities,
``SynthA`` (source), ``SynthB`` (target) and ``SynthC`` (spare), defined in ``domains.py``; and
``SynthB10``: SynthB at a lower density, at most 10 training images per identity (a seeded random
  subset of SynthB's training split, ~Market's 12.9 and Duke's 23.5 images per training id halved);
  same rendering, same query / gallery.

Market-1501 layout: ``bounding_box_train``, ``query``, ``bounding_box_test`` with files named
``{pid:04d}_c{cam}s1_{frame:06d}_00.png`` (cam 1-based). Every test identity appears in query
(one image from each of 1-2 of its cameras) and in the gallery (its other images, including at
least one camera no query of it uses); distractor identities appear in the gallery only.
All pids are >= 1; each domain owns a disjoint pid block (A: 1-2999, B: 3001-5999, C: 6001-8999).

Everything is a function of the seed: the same seed gives the same bytes in every file. A domain
is rendered once under ``<root>/synthetic/`` and reused after that (``cache.py``). Sizes:
constructor kwargs, else ``INCLR_SYNTH_SCALE`` / ``INCLR_SYNTH_SEED``, else the defaults
(``domains.resolve_params``).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.bases import ImageDataset

from ...registry import register_once
from .cache import (DONE_FILE, FILE_RE, FORMAT_VERSION, SyntheticDatasetError, cache_dir_name, ensure_domain, file_name,
                    render_domain, write_png)
from .domains import (DEFAULT_NUM_CAMS, DEFAULT_NUM_DISTRACTOR_IDS, DEFAULT_NUM_TEST_IDS, DEFAULT_NUM_TRAIN_IDS,
                      DEFAULT_TEST_IMAGES, DEFAULT_TRAIN_IMAGES, DISTRACTOR_IMAGES, DOMAINS, PID_BLOCK, SPLITS,
                      DomainSpec, SynthParams, build_plan, domain_cameras, domain_identity, resolve_params)

# The domains (domains.py) and their copies on disk (cache.py) are importable from here too.
__all__ = ["SyntheticReID", "SynthA", "SynthB", "SynthC", "SynthB10", "cap_images_per_identity",
           "DOMAINS", "DomainSpec", "SynthParams", "resolve_params", "build_plan", "domain_identity", "domain_cameras",
           "SPLITS", "PID_BLOCK", "DEFAULT_NUM_TRAIN_IDS", "DEFAULT_NUM_TEST_IDS", "DEFAULT_NUM_DISTRACTOR_IDS",
           "DEFAULT_NUM_CAMS", "DEFAULT_TRAIN_IMAGES", "DEFAULT_TEST_IMAGES", "DISTRACTOR_IMAGES",
           "FORMAT_VERSION", "FILE_RE", "DONE_FILE", "file_name", "write_png", "render_domain", "cache_dir_name",
           "ensure_domain", "SyntheticDatasetError"]


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
