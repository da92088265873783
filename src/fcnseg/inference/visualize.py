"""Label maps as pictures: palette colouring, overlays and image | truth | prediction grids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image
from torch import Tensor

from fcnseg.data.palettes import IGNORE_COLOR, flat_palette


def label_image(label: Tensor, palette: Sequence[Sequence[int]]) -> Image.Image:
    """An indexed ("P" mode) PNG-ready image of an H x W label map; 255 shows as ignore."""
    values = label.detach().cpu().numpy()
    if values.min(initial=0) < 0 or values.max(initial=0) > 255:
        raise ValueError("label values must lie in 0..255 to be written as an indexed image")
    image = Image.fromarray(values.astype(np.uint8), mode="P")
    colors = [tuple(c) for c in palette][:255]
    colors += [(0, 0, 0)] * (255 - len(colors)) + [IGNORE_COLOR]  # index 255: ignore
    image.putpalette(flat_palette(colors))
    return image


def colorize(label: Tensor, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """H x W x 3 uint8 RGB colours of a label map."""
    return np.asarray(label_image(label, palette).convert("RGB"))


def to_rgb(image: Tensor) -> np.ndarray:
    """H x W x 3 uint8 from a 3 x H x W float image of RGB values in 0..255."""
    return image[:3].detach().cpu().clamp(0, 255).round().byte().permute(1, 2, 0).numpy()


def overlay(
    image: Tensor, label: Tensor, palette: Sequence[Sequence[int]], alpha: float = 0.5
) -> np.ndarray:
    """The image with the label colours blended in (``alpha`` of colour), H x W x 3 uint8."""
    rgb = to_rgb(image).astype(np.float32)
    colors = colorize(label, palette).astype(np.float32)
    return (rgb * (1 - alpha) + colors * alpha).round().astype(np.uint8)


def comparison_grid(
    rows: Sequence[tuple[Tensor, Tensor, Tensor]],
    palette: Sequence[Sequence[int]],
    gap: int = 4,
) -> Image.Image:
    """One row per (image 3 x H x W, truth H x W, prediction H x W): image | truth | prediction.

    Rows of differing sizes are left-aligned on a white sheet.
    """
    if not rows:
        raise ValueError("comparison_grid needs at least one row")
    tiles = [
        [to_rgb(image), colorize(truth, palette), colorize(pred, palette)]
        for image, truth, pred in rows
    ]
    height = sum(row[0].shape[0] for row in tiles) + gap * (len(tiles) - 1)
    width = max(3 * row[0].shape[1] for row in tiles) + 2 * gap
    sheet = np.full((height, width, 3), 255, dtype=np.uint8)
    top = 0
    for row in tiles:
        h, w = row[0].shape[:2]
        for column, tile in enumerate(row):
            left = column * (w + gap)
            sheet[top : top + h, left : left + w] = tile
        top += h + gap
    return Image.fromarray(sheet)


__all__ = ["colorize", "comparison_grid", "label_image", "overlay", "to_rgb"]
