"""The fixed H x W pixel grid of the synthetic renderer, soft-edged masks on it, and the canvas that
paints them with part labels (docs/design.md §7).

Masks are alphas in [0, 1] with one pixel of anti-aliasing; :class:`Canvas` alpha-blends a colour (or a
per-pixel colour field) into the image and records which body part covers each pixel.
"""
from __future__ import annotations

import numpy as np

__all__ = ["H", "W", "PART_LABELS", "MIXED", "GRID_Y", "GRID_X", "quad", "ellipse", "Canvas"]

H, W = 128, 64

# Part labels of ``render_person(..., return_labels=True)``; MIXED marks anti-aliased edges.
PART_LABELS = {"background": 0, "skin": 1, "hair": 2, "upper": 3, "lower": 4, "shoes": 5,
               "accessory": 6}
MIXED = 255

#: pixel-centre row and column coordinates, (H, W) float32 each
GRID_Y, GRID_X = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5


def quad(cx: float, y0: float, y1: float, hw0: float, hw1: float, slope: float = 0.0) -> np.ndarray:
    """Alpha of a band between rows y0..y1 whose centre moves by ``slope`` px per row and whose
    half width goes linearly from hw0 to hw1 (rectangles, trapezoids, slanted limbs)."""
    t = np.clip((GRID_Y - y0) / max(y1 - y0, 1e-3), 0, 1)
    centre = cx + slope * (GRID_Y - y0)
    hw = hw0 + (hw1 - hw0) * t
    d = np.minimum(np.minimum(hw - np.abs(GRID_X - centre), GRID_Y - y0), y1 - GRID_Y)
    return np.clip(d + 0.5, 0, 1)


def ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Alpha of the ellipse centred at (cx, cy) with radii rx, ry, soft over about one pixel."""
    q = np.sqrt(((GRID_X - cx) / rx) ** 2 + ((GRID_Y - cy) / ry) ** 2)
    return np.clip((1.0 - q) * min(rx, ry) + 0.5, 0, 1)


class Canvas:
    """An image being painted (float32 RGB in [0, 1]) and, optionally, its per-pixel part labels."""

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
