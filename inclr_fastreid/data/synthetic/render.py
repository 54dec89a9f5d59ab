"""Procedural pedestrian renderer for the synthetic domain-shift benchmark (docs/design.md §7).

Identity lives in body regions (head: hair and skin; upper body: colour, sleeves and pattern;
lower body: colour and garment; shoes; accessories; body shape), so that the top / middle / bottom
thirds of a crop each carry identity. A camera model disturbs it (illumination, colour cast,
shading, blur, noise, textured background, viewpoint, box jitter, partial occlusion).

Everything is a pure function of its arguments and of an explicit ``numpy.random.Generator``:
the same inputs give the same bytes. Images are ``uint8`` arrays of shape (128, 64, 3), RGB.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from typing import Optional, Tuple

import cv2
import numpy as np

H, W = 128, 64
VIEWS = ("front", "back", "side")
HAIR_STYLES = ("short", "long", "buzz", "ponytail")
PATTERNS = ("plain", "stripes", "checks", "logo")
LOWER_STYLES = ("trousers", "shorts", "skirt")
BAGS = ("none", "backpack", "shoulder")

# Part labels of ``render_person(..., return_labels=True)``; MIXED marks anti-aliased edges.
PART_LABELS = {"background": 0, "skin": 1, "hair": 2, "upper": 3, "lower": 4, "shoes": 5,
               "accessory": 6}
MIXED = 255

_BG_H, _BG_W = 176, 112  # per-camera background scene; each image sees a random crop of it
_YY, _XX = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5

Color = Tuple[float, float, float]


# ---------------------------------------------------------------------------------------------
# Domain-level distributions
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Palette:
    """Distribution of clothing colours of one domain (HSV ranges; hue centres optional)."""

    sat: Tuple[float, float]
    val: Tuple[float, float]
    hue_centers: Tuple[float, ...] = ()  # empty: hue uniform on [0, 1)
    hue_spread: float = 0.05
    hue_uniform_prob: float = 1.0  # share of colours with uniform hue when centres are given
    neutral_prob: float = 0.1  # share of black / grey / white garments
    neutral_val: Tuple[float, float] = (0.08, 0.9)


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


@dataclass(frozen=True)
class Identity:
    """Appearance of one person; colours are RGB in [0, 1]."""

    skin: Color
    hair: Color
    hair_style: str
    upper: Color
    upper2: Color  # secondary colour: stripes / checks / logo
    pattern: str
    long_sleeves: bool
    lower: Color
    lower_style: str
    shoes: Color
    bag: str
    bag_color: Color
    bag_side: int  # -1 left, +1 right (shoulder bag)
    hat: Optional[Color]
    width: float  # body width factor
    leg: float  # leg length factor
    stripe_period: int


def _hsv(h: float, s: float, v: float) -> Color:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return (float(r), float(g), float(b))


def sample_color(rng: np.random.Generator, palette: Palette) -> Color:
    """Draw one garment colour from a domain palette."""
    if rng.random() < palette.neutral_prob:
        v = rng.uniform(*palette.neutral_val)
        return _hsv(rng.random(), rng.uniform(0.0, 0.08), v)
    if palette.hue_centers and rng.random() >= palette.hue_uniform_prob:
        h = palette.hue_centers[rng.integers(len(palette.hue_centers))] + rng.normal(0, palette.hue_spread)
    else:
        h = rng.random()
    return _hsv(h, rng.uniform(*palette.sat), rng.uniform(*palette.val))


def _distinct(rng: np.random.Generator, palette: Palette, ref: Color, min_dist: float = 0.25) -> Color:
    """A palette colour at least ``min_dist`` (RGB L2) from ``ref``, so patterns stay visible."""
    c = sample_color(rng, palette)
    for _ in range(20):
        if np.linalg.norm(np.subtract(c, ref)) >= min_dist:
            break
        c = sample_color(rng, palette)
    return c


_SKIN = ((0.95, 0.80, 0.68), (0.87, 0.67, 0.52), (0.72, 0.52, 0.38), (0.52, 0.36, 0.25),
         (0.36, 0.24, 0.17))
_HAIR = ((0.06, 0.05, 0.05), (0.25, 0.16, 0.09), (0.45, 0.30, 0.16), (0.80, 0.66, 0.38),
         (0.55, 0.55, 0.55), (0.55, 0.22, 0.10))


def sample_identity(rng: np.random.Generator, palette: Palette) -> Identity:
    """Draw a person: part colours from ``palette``, garment types, accessories and body shape."""
    skin_a, skin_b = rng.integers(len(_SKIN)), rng.random()
    skin = tuple(float(x) for x in np.clip(np.asarray(_SKIN[skin_a]) * (0.92 + 0.16 * skin_b), 0, 1))
    hair = tuple(float(x) for x in np.clip(np.asarray(_HAIR[rng.integers(len(_HAIR))])
                                           * rng.uniform(0.85, 1.15), 0, 1))
    upper = sample_color(rng, palette)
    pattern = PATTERNS[rng.choice(4, p=[0.4, 0.22, 0.16, 0.22])]
    upper2 = _distinct(rng, palette, upper)
    lower = sample_color(rng, palette)
    lower_style = LOWER_STYLES[rng.choice(3, p=[0.6, 0.2, 0.2])]
    shoes = sample_color(rng, palette) if rng.random() < 0.5 else _hsv(0, 0, rng.uniform(0.05, 0.95))
    bag = BAGS[rng.choice(3, p=[0.5, 0.3, 0.2])]
    bag_color = sample_color(rng, palette)
    hat = sample_color(rng, palette) if rng.random() < 0.2 else None
    return Identity(
        skin=skin, hair=hair, hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        upper=upper, upper2=upper2, pattern=pattern, long_sleeves=bool(rng.random() < 0.6),
        lower=lower, lower_style=lower_style, shoes=shoes, bag=bag, bag_color=bag_color,
        bag_side=int(rng.choice([-1, 1])), hat=hat, width=float(rng.uniform(0.82, 1.22)),
        leg=float(rng.uniform(0.9, 1.1)), stripe_period=int(rng.integers(3, 7)),
    )


# ---------------------------------------------------------------------------------------------
# Cameras and backgrounds
# ---------------------------------------------------------------------------------------------
def _background(rng: np.random.Generator, spec: CameraSpec) -> np.ndarray:
    """A textured scene (wall / facade with openings over a tiled or plain floor), per camera."""
    bg = np.empty((_BG_H, _BG_W, 3), np.float32)
    v0, s0 = rng.uniform(*spec.bg_val), rng.uniform(*spec.bg_sat)
    wall = np.asarray(_hsv(rng.random(), s0, v0), np.float32)
    floor = np.asarray(_hsv(rng.random(), s0 * 0.6, v0 * rng.uniform(0.6, 1.1)), np.float32)
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
        c = np.asarray(_hsv(rng.random(), rng.uniform(0, 0.6), rng.uniform(0.1, 1.0)), np.float32)
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


# ---------------------------------------------------------------------------------------------
# Drawing primitives (soft-edged masks on the fixed H x W grid)
# ---------------------------------------------------------------------------------------------
def _quad(cx: float, y0: float, y1: float, hw0: float, hw1: float, slope: float = 0.0) -> np.ndarray:
    """Alpha of a band between rows y0..y1 whose centre moves by ``slope`` px per row and whose
    half width goes linearly from hw0 to hw1 (rectangles, trapezoids, slanted limbs)."""
    t = np.clip((_YY - y0) / max(y1 - y0, 1e-3), 0, 1)
    centre = cx + slope * (_YY - y0)
    hw = hw0 + (hw1 - hw0) * t
    d = np.minimum(np.minimum(hw - np.abs(_XX - centre), _YY - y0), y1 - _YY)
    return np.clip(d + 0.5, 0, 1)


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    q = np.sqrt(((_XX - cx) / rx) ** 2 + ((_YY - cy) / ry) ** 2)
    return np.clip((1.0 - q) * min(rx, ry) + 0.5, 0, 1)


class _Canvas:
    def __init__(self, bg: np.ndarray, labels: bool):
        self.img = bg
        self.labels = np.zeros((H, W), np.uint8) if labels else None

    def paint(self, alpha: np.ndarray, color, part: str) -> None:
        """Alpha-blend ``color`` (RGB or an (H, W, 3) field) into the image, inside alpha's box."""
        rows = np.flatnonzero(alpha.any(1))
        if rows.size == 0:
            return
        cols = np.flatnonzero(alpha.any(0))
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        c = np.asarray(color, np.float32)
        if c.ndim == 3:
            c = c[box]
        a = alpha[box][..., None]
        self.img[box] = self.img[box] * (1 - a) + c * a
        if self.labels is not None:
            lab, al = self.labels[box], alpha[box]
            lab[al >= 0.999] = PART_LABELS[part]
            lab[(al > 1e-3) & (al < 0.999)] = MIXED


def _upper_field(idn: Identity, top: float, cx: float, view: str) -> np.ndarray:
    """Per-pixel colour of the upper garment (plain, stripes or checks)."""
    c1 = np.asarray(idn.upper, np.float32)
    c2 = np.asarray(idn.upper2, np.float32)
    if idn.pattern == "stripes":
        m = ((np.floor((_YY - top) / idn.stripe_period)) % 2) == 1
    elif idn.pattern == "checks":
        p = idn.stripe_period + 1
        m = ((np.floor((_YY - top) / p) + np.floor((_XX - cx) / p)) % 2) == 1
    else:
        return c1
    return np.where(m[..., None], c2, c1)


def _draw_person(cv: _Canvas, idn: Identity, view: str, cx: float, top: float, ph: float,
                 phase: float) -> None:
    """Paint the person: ``top`` = head top row, ``ph`` = person height in pixels."""
    u = ph / 100.0  # body unit
    wf = idn.width * (0.62 if view == "side" else 1.0)
    head_cy, head_ry, head_rx = top + 7 * u, 7 * u, 5.2 * u
    neck_y = top + 13 * u
    torso_y0, torso_y1 = top + 15 * u, top + 50 * u
    hip_y = torso_y1
    leg_len = 42 * u * idn.leg
    foot_y = min(hip_y + leg_len, top + 97 * u)
    shoe_y1 = foot_y + 4 * u
    sh_hw, waist_hw = 13 * u * wf, 10.5 * u * wf
    skin, lower = idn.skin, idn.lower
    upper_field = _upper_field(idn, torso_y0, cx, view)
    stride = phase * 6 * u  # walking: legs / arms swing (most visible from the side)

    # back-view accessories behind nothing; side-view backpack sticks out behind the torso
    if idn.bag == "backpack" and view == "side":
        cv.paint(_quad(cx - idn.bag_side * (sh_hw + 3 * u), torso_y0 + 3 * u, torso_y0 + 28 * u,
                       4 * u, 4 * u), idn.bag_color, "accessory")
    if idn.hair_style == "long" and view != "side":
        cv.paint(_quad(cx, head_cy, top + 30 * u, 6.5 * u, 7 * u), idn.hair, "hair")

    # legs and lower garment
    if view == "side":
        legs = [(cx, stride), (cx, -stride)]
    else:
        legs = [(cx - 4.6 * u * idn.width, 0.0), (cx + 4.6 * u * idn.width, 0.0)]
    leg_hw = 4.2 * u * (1.0 if view != "side" else 1.1)
    slope_of = lambda s: s / max(foot_y - hip_y, 1.0)  # noqa: E731
    for lx, s in legs:
        if idn.lower_style == "trousers":
            cv.paint(_quad(lx, hip_y - 1, foot_y, leg_hw, leg_hw * 0.85, slope_of(s)), lower, "lower")
        else:
            cv.paint(_quad(lx, hip_y - 1, foot_y, leg_hw * 0.8, leg_hw * 0.65, slope_of(s)), skin, "skin")
            if idn.lower_style == "shorts":
                cv.paint(_quad(lx, hip_y - 1, hip_y + 14 * u, leg_hw * 1.05, leg_hw, slope_of(s)),
                         lower, "lower")
        cv.paint(_quad(lx + s + (1.5 * u if view == "side" else 0), foot_y, shoe_y1,
                       leg_hw * 1.05, leg_hw * 1.1), idn.shoes, "shoes")
    if idn.lower_style == "skirt":
        cv.paint(_quad(cx, hip_y - 2, hip_y + 22 * u, waist_hw, waist_hw * 1.5), lower, "lower")
    else:
        cv.paint(_quad(cx, hip_y - 2, hip_y + 6 * u, waist_hw, waist_hw * 1.05), lower, "lower")

    # arms (front/back: both sides; side: one arm over the torso, painted later)
    arm_hw = 3.2 * u
    if view != "side":
        for sgn in (-1, 1):
            ax = cx + sgn * (sh_hw + arm_hw * 0.6)
            slope = sgn * 0.06
            cv.paint(_quad(ax, torso_y0 + 1, torso_y0 + 35 * u, arm_hw, arm_hw * 0.85, slope), skin, "skin")
            y_sl = torso_y0 + (33 * u if idn.long_sleeves else 13 * u)
            cv.paint(_quad(ax, torso_y0 + 1, y_sl, arm_hw * 1.1, arm_hw, slope), upper_field, "upper")

    # torso
    cv.paint(_quad(cx, torso_y0, torso_y1, sh_hw, waist_hw), upper_field, "upper")
    cv.paint(_quad(cx, neck_y, torso_y0 + 1, 2.5 * u, 2.5 * u), skin, "skin")
    if idn.pattern == "logo" and view == "front":
        cv.paint(_quad(cx, torso_y0 + 7 * u, torso_y0 + 17 * u, 5 * u, 5 * u), idn.upper2, "upper")

    # accessories over the torso
    if idn.bag == "backpack":
        if view == "back":
            cv.paint(_quad(cx, torso_y0 + 3 * u, torso_y0 + 29 * u, sh_hw * 0.8, sh_hw * 0.75),
                     idn.bag_color, "accessory")
        elif view == "front":
            for sgn in (-1, 1):
                cv.paint(_quad(cx + sgn * sh_hw * 0.6, torso_y0, torso_y0 + 20 * u, 1.2 * u, 1.2 * u),
                         idn.bag_color, "accessory")
    elif idn.bag == "shoulder":
        side = idn.bag_side if view != "back" else -idn.bag_side
        bx = cx + side * (waist_hw + 2 * u) if view != "side" else cx + 2 * u * side
        strap_slope = -side * (sh_hw * 1.4) / (30 * u)
        cv.paint(_quad(cx - side * sh_hw * 0.7, torso_y0, hip_y - 4 * u, 1.0 * u, 1.0 * u, strap_slope),
                 idn.bag_color, "accessory")
        cv.paint(_quad(bx, hip_y - 6 * u, hip_y + 8 * u, 5 * u, 5.5 * u), idn.bag_color, "accessory")
    if view == "side":
        cv.paint(_quad(cx, torso_y0 + 2, torso_y0 + 35 * u, arm_hw, arm_hw * 0.85, -slope_of(stride) * 0.8),
                 skin, "skin")
        y_sl = torso_y0 + (33 * u if idn.long_sleeves else 13 * u)
        cv.paint(_quad(cx, torso_y0 + 2, y_sl, arm_hw * 1.1, arm_hw, -slope_of(stride) * 0.8),
                 upper_field, "upper")

    # head
    hx = cx + (1.2 * u * idn.bag_side if view == "side" else 0.0)
    cv.paint(_ellipse(hx, head_cy, head_rx * (0.9 if view == "side" else 1.0), head_ry), skin, "skin")
    if idn.hair_style != "buzz" or view == "back":
        if view == "back":
            hair_alpha = _ellipse(hx, head_cy - 0.3 * u, head_rx * 1.05, head_ry * 1.02)
        else:
            cap = _ellipse(hx, head_cy - 2.0 * u, head_rx * 1.06, head_ry * 0.75)
            hair_alpha = cap * (_YY < head_cy - 0.5 * u)
            if view == "side":  # hair covers the back half of the head
                hair_alpha = np.maximum(hair_alpha, _ellipse(hx - idn.bag_side * 1.5 * u, head_cy,
                                                             head_rx * 0.8, head_ry * 0.95)
                                        * ((_XX - hx) * idn.bag_side < 0))
        if idn.hair_style == "buzz":
            hair_alpha = hair_alpha * 0.6
        cv.paint(hair_alpha.astype(np.float32), idn.hair, "hair")
    if idn.hair_style == "ponytail":
        px = hx if view == "back" else hx - idn.bag_side * 5 * u
        if view != "front":
            cv.paint(_quad(px, head_cy - 1 * u, head_cy + 11 * u, 1.8 * u, 1.2 * u), idn.hair, "hair")
    if idn.hat is not None:
        cv.paint(_quad(hx, top - 1.5 * u, head_cy - 2.5 * u, head_rx * 0.95, head_rx * 1.05), idn.hat,
                 "accessory")
        cv.paint(_quad(hx + (2.5 * u * idn.bag_side if view == "side" else 0), head_cy - 3 * u,
                       head_cy - 1.8 * u, head_rx * 1.35, head_rx * 1.35), idn.hat, "accessory")


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
    cv = _Canvas(bg.astype(np.float32, copy=True), return_labels)

    if effects:
        view_ = view or v_draw
        ph = scale * H
        top = (H - ph) / 2 + vshift
        cx = W / 2 + shift
    else:
        view_ = view or "front"
        ph, top, cx, phase = 0.88 * H, 0.06 * H, W / 2, 0.0
    _draw_person(cv, identity, view_, cx, top, ph, phase)
    img = cv.img

    if effects:
        occluded = occ_draw[0] < camera.occlusion
        if occluded:
            if occ_kind < 0.4:  # pole / tree trunk
                pw = 3 + occ_draw[1] * 7
                px = occ_draw[2] * W
                a = _quad(px, -1, H + 1, pw / 2, pw / 2)
            elif occ_kind < 0.75:  # object entering from the bottom (car, bench, bag)
                oh = (0.15 + 0.25 * occ_draw[1]) * H
                a = _quad(W / 2, H - oh, H + 1, W, W)
            else:  # object entering from one side
                ow = (0.2 + 0.25 * occ_draw[1]) * W
                ox = 0.0 if occ_draw[3] < 0.5 else float(W)
                y0 = occ_draw[4] * 0.5 * H
                a = _quad(ox, y0, y0 + (0.3 + 0.4 * occ_draw[5]) * H, ow, ow)
            img = img * (1 - a[..., None]) + occ_color * a[..., None]
            if cv.labels is not None:
                cv.labels[a > 1e-3] = PART_LABELS["background"]
        shade = 1.0 + camera.shade * (_XX / W - 0.5)
        img = img * (camera.gain * gain_j) * camera.cast * shade[..., None]
        img = np.clip(img, 0, 1) ** camera.gamma
        if camera.blur > 0.05:
            img = cv2.GaussianBlur(img, (0, 0), sigmaX=camera.blur, borderType=cv2.BORDER_REFLECT)
        img = img + camera.noise * noise
    out = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if return_labels:
        return out, cv.labels
    return out
