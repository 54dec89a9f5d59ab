"""Procedural pedestrian renderer for the synthetic domain-shift benchmark (docs/design.md §7).

Identity lives in body regions (``person.py``, painted on ``canvas.py``'s grid). A camera model,
here, disturbs it (illumination, colour cast, shading, blur, noise, textured background, viewpoint,
box jitter, partial occlusion).

Everything is a pure function of its arguments and of an explicit ``numpy.random.Generator``:
the same inputs give the same bytes. Images are ``uint8`` arrays of shape (128, 64, 3), RGB.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import cv2
import numpy as np

from .canvas import GRID_X, H, MIXED, PART_LABELS, W, Canvas, quad
from .person import (BAGS, HAIR_STYLES, LOWER_STYLES, PATTERNS, VIEWS, Color, Identity, Palette, draw_person, hsv,
                     sample_color, sample_identity)

# The appearance model (person.py) and the canvas (canvas.py) are importable from here too.
__all__ = ["H", "W", "VIEWS", "HAIR_STYLES", "PATTERNS", "LOWER_STYLES", "BAGS", "PART_LABELS", "MIXED", "Color",
           "Palette", "Identity", "CameraSpec", "CameraModel", "sample_color", "sample_identity", "sample_camera",
           "render_person"]

_BG_H, _BG_W = 176, 112  # per-camera background scene; each image sees a random crop of it


@dataclass(frozen=True)
class CameraSpec:
    """Distribution of camera models of one domain (each camera draws its parameters from it)."""

    gain: Tuple[float, float]
    cast: float  # max deviation of per-channel multipliers from 1
    gamma: Tuple[float, float]
    blur: Tuple[float, float]  # Gaussian sigma in pixels (at 128x64)
    noise: Tuple[float, float]  # std of additive Gaussian noise, in [0, 1] units
    shade: float  # max left-right illumination slope
    occlusion: Tuple[float, float]  # per-camera probability that an image is occluded
    scale: Tuple[float, float]  # person height / image height
    bg_val: Tuple[float, float]  # brightness of background scenes
    bg_sat: Tuple[float, float]
    gain_jitter: float = 0.08  # per-image illumination change within a camera
    shift: float = 0.08  # per-image horizontal box jitter, fraction of the width


@dataclass
class CameraModel:
    """One camera: fixed imaging parameters, a background scene and a viewpoint distribution."""

    gain: float
    cast: np.ndarray  # (3,) per-channel multipliers
    gamma: float
    blur: float
    noise: float
    shade: float
    occlusion: float
    scale: Tuple[float, float]
    shift: float
    gain_jitter: float
    view_probs: np.ndarray  # (3,) over VIEWS
    background: np.ndarray = field(repr=False)  # (_BG_H, _BG_W, 3) float32 in [0, 1]



def _background(rng: np.random.Generator, spec: CameraSpec) -> np.ndarray:
    """A textured scene (wall / facade with openings over a tiled or plain floor), per camera."""
    bg = np.empty((_BG_H, _BG_W, 3), np.float32)
    v0, s0 = rng.uniform(*spec.bg_val), rng.uniform(*spec.bg_sat)
    wall = np.asarray(hsv(rng.random(), s0, v0), np.float32)
    floor = np.asarray(hsv(rng.random(), s0 * 0.6, v0 * rng.uniform(0.6, 1.1)), np.float32)
    horizon = int(rng.uniform(0.45, 0.75) * _BG_H)
    bg[:horizon] = wall
    bg[horizon:] = floor
    yy, xx = np.mgrid[0:_BG_H, 0:_BG_W]
    # wall texture: bricks, vertical panels or windows
    kind = rng.integers(3)
    if kind == 0:
        bh = int(rng.integers(4, 9))
        bw = int(rng.integers(8, 17))
        off = ((yy // bh) % 2) * (bw // 2)
        mortar = ((yy % bh) == 0) | (((xx + off) % bw) == 0)
        m = mortar[:horizon]
        bg[:horizon][m] *= 0.75
    elif kind == 1:
        pw = int(rng.integers(10, 30))
        shade = 0.85 + 0.15 * ((xx[:horizon] // pw) % 2)
        bg[:horizon] *= shade[..., None]
    for _ in range(int(rng.integers(2, 6))):  # windows / doors / signs
        h0, w0 = int(rng.integers(8, 40)), int(rng.integers(8, 40))
        y0, x0 = int(rng.integers(0, max(1, horizon - h0))), int(rng.integers(0, _BG_W - w0))
        c = np.asarray(hsv(rng.random(), rng.uniform(0, 0.6), rng.uniform(0.1, 1.0)), np.float32)
        bg[y0:y0 + h0, x0:x0 + w0] = c
    # floor texture: tiles or lines
    if rng.random() < 0.6:
        t = int(rng.integers(6, 16))
        tiles = (((yy // t) + (xx // t)) % 2)[horizon:]
        bg[horizon:] *= (0.9 + 0.1 * tiles)[..., None]
    # large-scale illumination falloff and fine grain, fixed per camera
    bg *= (1.0 + rng.uniform(-0.2, 0.2) * (yy / _BG_H - 0.5))[..., None]
    bg += rng.normal(0, 0.02, bg.shape).astype(np.float32)
    return np.clip(bg, 0, 1)


def sample_camera(rng: np.random.Generator, spec: CameraSpec) -> CameraModel:
    """Draw one camera's fixed parameters, background scene and viewpoint distribution."""
    cast = 1.0 + rng.uniform(-spec.cast, spec.cast, 3)
    cast = cast / cast.mean()
    dominant = rng.integers(3)  # cameras watch people walking mostly in one direction
    view_probs = np.full(3, 0.15)
    view_probs[dominant] = 0.7
    view_probs = view_probs + rng.uniform(0, 0.1, 3)
    view_probs /= view_probs.sum()
    s_lo, s_hi = spec.scale
    s_mid = rng.uniform(s_lo, s_hi)
    return CameraModel(
        gain=float(rng.uniform(*spec.gain)), cast=cast.astype(np.float32),
        gamma=float(rng.uniform(*spec.gamma)), blur=float(rng.uniform(*spec.blur)),
        noise=float(rng.uniform(*spec.noise)), shade=float(rng.uniform(-spec.shade, spec.shade)),
        occlusion=float(rng.uniform(*spec.occlusion)),
        scale=(max(s_lo, s_mid - 0.06), min(s_hi, s_mid + 0.06)), shift=spec.shift,
        gain_jitter=spec.gain_jitter, view_probs=view_probs, background=_background(rng, spec),
    )



def render_person(identity: Identity, camera: CameraModel, rng: np.random.Generator,
                  effects: bool = True, view: Optional[str] = None, return_labels: bool = False):
    """Render one (128, 64, 3) uint8 crop of ``identity`` seen by ``camera``.

    ``effects=False`` disables every nuisance (illumination, cast, shading, gamma, blur, noise,
    occlusion, box jitter; view = ``view`` or front), leaving only the background crop random:
    two such renders of one identity agree on every person pixel. With ``return_labels`` also
    returns an (H, W) uint8 map of PART_LABELS for fully covered pixels (MIXED on soft edges).
    """
    # random draws happen in a fixed order whatever ``effects`` is, so the streams line up
    v_draw = VIEWS[rng.choice(3, p=camera.view_probs)]
    scale = rng.uniform(*camera.scale)
    shift = rng.uniform(-camera.shift, camera.shift) * W
    vshift = rng.uniform(-0.04, 0.04) * H
    phase = rng.uniform(-1, 1)
    gain_j = 1.0 + rng.uniform(-camera.gain_jitter, camera.gain_jitter)
    by, bx = int(rng.integers(0, _BG_H - H + 1)), int(rng.integers(0, _BG_W - W + 1))
    flip_bg = bool(rng.random() < 0.5)
    occ_kind = rng.random()
    occ_draw = rng.random(6)
    occ_color = rng.uniform(0.05, 0.9, 3).astype(np.float32)
    noise = rng.standard_normal((H, W, 3)).astype(np.float32)

    bg = camera.background[by:by + H, bx:bx + W]
    if flip_bg:
        bg = bg[:, ::-1]
    cv = Canvas(bg.astype(np.float32, copy=True), return_labels)

    if effects:
        view_ = view or v_draw
        ph = scale * H
        top = (H - ph) / 2 + vshift
        cx = W / 2 + shift
    else:
        view_ = view or "front"
        ph, top, cx, phase = 0.88 * H, 0.06 * H, W / 2, 0.0
    draw_person(cv, identity, view_, cx, top, ph, phase)
    img = cv.img

    if effects:
        occluded = occ_draw[0] < camera.occlusion
        if occluded:
            if occ_kind < 0.4:  # pole / tree trunk
                pw = 3 + occ_draw[1] * 7
                px = occ_draw[2] * W
                a = quad(px, -1, H + 1, pw / 2, pw / 2)
            elif occ_kind < 0.75:  # object entering from the bottom (car, bench, bag)
                oh = (0.15 + 0.25 * occ_draw[1]) * H
                a = quad(W / 2, H - oh, H + 1, W, W)
            else:  # object entering from one side
                ow = (0.2 + 0.25 * occ_draw[1]) * W
                ox = 0.0 if occ_draw[3] < 0.5 else float(W)
                y0 = occ_draw[4] * 0.5 * H
                a = quad(ox, y0, y0 + (0.3 + 0.4 * occ_draw[5]) * H, ow, ow)
            img = img * (1 - a[..., None]) + occ_color * a[..., None]
            if cv.labels is not None:
                cv.labels[a > 1e-3] = PART_LABELS["background"]
        shade = 1.0 + camera.shade * (GRID_X / W - 0.5)
        img = img * (camera.gain * gain_j) * camera.cast * shade[..., None]
        img = np.clip(img, 0, 1) ** camera.gamma
        if camera.blur > 0.05:
            img = cv2.GaussianBlur(img, (0, 0), sigmaX=camera.blur, borderType=cv2.BORDER_REFLECT)
        img = img + camera.noise * noise
    out = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if return_labels:
        return out, cv.labels
    return out
