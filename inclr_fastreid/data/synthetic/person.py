"""The appearance model of the synthetic pedestrians (docs/design.md §7): a domain's palette, the
identity drawn from it, and the person painted onto a canvas.

Identity lives in body regions (head: hair and skin; upper body: colour, sleeves and pattern;
lower body: colour and garment; shoes; accessories; body shape), so that the top / middle / bottom
thirds of a crop each carry identity. Everything is a pure function of its arguments and of an
explicit ``numpy.random.Generator``.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from .canvas import GRID_X, GRID_Y, Canvas, ellipse, quad

__all__ = ["VIEWS", "HAIR_STYLES", "PATTERNS", "LOWER_STYLES", "BAGS", "Color", "Palette", "Identity", "hsv",
           "sample_color", "sample_identity", "draw_person"]

VIEWS = ("front", "back", "side")
HAIR_STYLES = ("short", "long", "buzz", "ponytail")
PATTERNS = ("plain", "stripes", "checks", "logo")
LOWER_STYLES = ("trousers", "shorts", "skirt")
BAGS = ("none", "backpack", "shoulder")

Color = Tuple[float, float, float]


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



def hsv(h: float, s: float, v: float) -> Color:
    """RGB in [0, 1] of hue ``h`` (taken mod 1), saturation and value (clipped to [0, 1])."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return (float(r), float(g), float(b))


def sample_color(rng: np.random.Generator, palette: Palette) -> Color:
    """Draw one garment colour from a domain palette."""
    if rng.random() < palette.neutral_prob:
        v = rng.uniform(*palette.neutral_val)
        return hsv(rng.random(), rng.uniform(0.0, 0.08), v)
    if palette.hue_centers and rng.random() >= palette.hue_uniform_prob:
        h = palette.hue_centers[rng.integers(len(palette.hue_centers))] + rng.normal(0, palette.hue_spread)
    else:
        h = rng.random()
    return hsv(h, rng.uniform(*palette.sat), rng.uniform(*palette.val))


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
    shoes = sample_color(rng, palette) if rng.random() < 0.5 else hsv(0, 0, rng.uniform(0.05, 0.95))
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



def _upper_field(idn: Identity, top: float, cx: float, view: str) -> np.ndarray:
    """Per-pixel colour of the upper garment (plain, stripes or checks)."""
    c1 = np.asarray(idn.upper, np.float32)
    c2 = np.asarray(idn.upper2, np.float32)
    if idn.pattern == "stripes":
        m = ((np.floor((GRID_Y - top) / idn.stripe_period)) % 2) == 1
    elif idn.pattern == "checks":
        p = idn.stripe_period + 1
        m = ((np.floor((GRID_Y - top) / p) + np.floor((GRID_X - cx) / p)) % 2) == 1
    else:
        return c1
    return np.where(m[..., None], c2, c1)


def draw_person(cv: Canvas, idn: Identity, view: str, cx: float, top: float, ph: float,
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
        cv.paint(quad(cx - idn.bag_side * (sh_hw + 3 * u), torso_y0 + 3 * u, torso_y0 + 28 * u,
                       4 * u, 4 * u), idn.bag_color, "accessory")
    if idn.hair_style == "long" and view != "side":
        cv.paint(quad(cx, head_cy, top + 30 * u, 6.5 * u, 7 * u), idn.hair, "hair")

    # legs and lower garment
    if view == "side":
        legs = [(cx, stride), (cx, -stride)]
    else:
        legs = [(cx - 4.6 * u * idn.width, 0.0), (cx + 4.6 * u * idn.width, 0.0)]
    leg_hw = 4.2 * u * (1.0 if view != "side" else 1.1)
    slope_of = lambda s: s / max(foot_y - hip_y, 1.0)  # noqa: E731
    for lx, s in legs:
        if idn.lower_style == "trousers":
            cv.paint(quad(lx, hip_y - 1, foot_y, leg_hw, leg_hw * 0.85, slope_of(s)), lower, "lower")
        else:
            cv.paint(quad(lx, hip_y - 1, foot_y, leg_hw * 0.8, leg_hw * 0.65, slope_of(s)), skin, "skin")
            if idn.lower_style == "shorts":
                cv.paint(quad(lx, hip_y - 1, hip_y + 14 * u, leg_hw * 1.05, leg_hw, slope_of(s)),
                         lower, "lower")
        cv.paint(quad(lx + s + (1.5 * u if view == "side" else 0), foot_y, shoe_y1,
                       leg_hw * 1.05, leg_hw * 1.1), idn.shoes, "shoes")
    if idn.lower_style == "skirt":
        cv.paint(quad(cx, hip_y - 2, hip_y + 22 * u, waist_hw, waist_hw * 1.5), lower, "lower")
    else:
        cv.paint(quad(cx, hip_y - 2, hip_y + 6 * u, waist_hw, waist_hw * 1.05), lower, "lower")

    # arms (front/back: both sides; side: one arm over the torso, painted later)
    arm_hw = 3.2 * u
    if view != "side":
        for sgn in (-1, 1):
            ax = cx + sgn * (sh_hw + arm_hw * 0.6)
            slope = sgn * 0.06
            cv.paint(quad(ax, torso_y0 + 1, torso_y0 + 35 * u, arm_hw, arm_hw * 0.85, slope), skin, "skin")
            y_sl = torso_y0 + (33 * u if idn.long_sleeves else 13 * u)
            cv.paint(quad(ax, torso_y0 + 1, y_sl, arm_hw * 1.1, arm_hw, slope), upper_field, "upper")

    # torso
    cv.paint(quad(cx, torso_y0, torso_y1, sh_hw, waist_hw), upper_field, "upper")
    cv.paint(quad(cx, neck_y, torso_y0 + 1, 2.5 * u, 2.5 * u), skin, "skin")
    if idn.pattern == "logo" and view == "front":
        cv.paint(quad(cx, torso_y0 + 7 * u, torso_y0 + 17 * u, 5 * u, 5 * u), idn.upper2, "upper")

    # accessories over the torso
    if idn.bag == "backpack":
        if view == "back":
            cv.paint(quad(cx, torso_y0 + 3 * u, torso_y0 + 29 * u, sh_hw * 0.8, sh_hw * 0.75),
                     idn.bag_color, "accessory")
        elif view == "front":
            for sgn in (-1, 1):
                cv.paint(quad(cx + sgn * sh_hw * 0.6, torso_y0, torso_y0 + 20 * u, 1.2 * u, 1.2 * u),
                         idn.bag_color, "accessory")
    elif idn.bag == "shoulder":
        side = idn.bag_side if view != "back" else -idn.bag_side
        bx = cx + side * (waist_hw + 2 * u) if view != "side" else cx + 2 * u * side
        strap_slope = -side * (sh_hw * 1.4) / (30 * u)
        cv.paint(quad(cx - side * sh_hw * 0.7, torso_y0, hip_y - 4 * u, 1.0 * u, 1.0 * u, strap_slope),
                 idn.bag_color, "accessory")
        cv.paint(quad(bx, hip_y - 6 * u, hip_y + 8 * u, 5 * u, 5.5 * u), idn.bag_color, "accessory")
    if view == "side":
        cv.paint(quad(cx, torso_y0 + 2, torso_y0 + 35 * u, arm_hw, arm_hw * 0.85, -slope_of(stride) * 0.8),
                 skin, "skin")
        y_sl = torso_y0 + (33 * u if idn.long_sleeves else 13 * u)
        cv.paint(quad(cx, torso_y0 + 2, y_sl, arm_hw * 1.1, arm_hw, -slope_of(stride) * 0.8),
                 upper_field, "upper")

    # head
    hx = cx + (1.2 * u * idn.bag_side if view == "side" else 0.0)
    cv.paint(ellipse(hx, head_cy, head_rx * (0.9 if view == "side" else 1.0), head_ry), skin, "skin")
    if idn.hair_style != "buzz" or view == "back":
        if view == "back":
            hair_alpha = ellipse(hx, head_cy - 0.3 * u, head_rx * 1.05, head_ry * 1.02)
        else:
            cap = ellipse(hx, head_cy - 2.0 * u, head_rx * 1.06, head_ry * 0.75)
            hair_alpha = cap * (GRID_Y < head_cy - 0.5 * u)
            if view == "side":  # hair covers the back half of the head
                hair_alpha = np.maximum(hair_alpha, ellipse(hx - idn.bag_side * 1.5 * u, head_cy,
                                                             head_rx * 0.8, head_ry * 0.95)
                                        * ((GRID_X - hx) * idn.bag_side < 0))
        if idn.hair_style == "buzz":
            hair_alpha = hair_alpha * 0.6
        cv.paint(hair_alpha.astype(np.float32), idn.hair, "hair")
    if idn.hair_style == "ponytail":
        px = hx if view == "back" else hx - idn.bag_side * 5 * u
        if view != "front":
            cv.paint(quad(px, head_cy - 1 * u, head_cy + 11 * u, 1.8 * u, 1.2 * u), idn.hair, "hair")
    if idn.hat is not None:
        cv.paint(quad(hx, top - 1.5 * u, head_cy - 2.5 * u, head_rx * 0.95, head_rx * 1.05), idn.hat,
                 "accessory")
        cv.paint(quad(hx + (2.5 * u * idn.bag_side if view == "side" else 0), head_cy - 3 * u,
                       head_cy - 1.8 * u, head_rx * 1.35, head_rx * 1.35), idn.hat, "accessory")
