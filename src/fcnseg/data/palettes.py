"""Colour palettes for label maps (indexed PNGs, overlays, figures)."""

from __future__ import annotations

IGNORE_COLOR = (255, 255, 255)  # shown for the ignore index (255) in every palette


def voc_palette(num_colors: int = 256) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map: class c's bits 0, 1, 2 spread over the high bits of R, G, B.

    Class 0 is black and class 255 (VOC's ignore value) is (224, 224, 192), as in the
    VOC devkit's ``labelcolormap``. Any number of colours, so it serves every dataset.
    """
    palette = []
    for index in range(num_colors):
        red = green = blue = 0
        c = index
        for shift in range(7, -1, -1):
            red |= ((c >> 0) & 1) << shift
            green |= ((c >> 1) & 1) << shift
            blue |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.append((red, green, blue))
    return palette


def flat_palette(colors: list[tuple[int, int, int]]) -> list[int]:
    """A 768-entry flat list for ``PIL.Image.putpalette``: the given colours, then the VOC map."""
    full = list(colors[:256]) + voc_palette(256)[len(colors) :]
    return [channel for rgb in full for channel in rgb]
