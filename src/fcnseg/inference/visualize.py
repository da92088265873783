"""Label maps as pictures: palette colouring, overlays and image | truth | prediction grids.

Pictures people read carry a legend of the classes present (:func:`legend_entries`): an
overlay gets a panel of colour swatches and names beside it (:func:`with_legend`, PIL
drawing), and :func:`show_figure` lays out image | prediction | truth with column headers and
a matplotlib legend. Palette PNGs (:func:`label_image`) stay the machine-readable output.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from fcnseg.data.palettes import IGNORE_COLOR, flat_palette

if TYPE_CHECKING:
    from matplotlib.figure import Figure

IGNORE_INDEX = 255  # label value of unlabelled pixels (not a class; never in a legend)
LEGEND_FONT_SIZE = 14  # pixels; swatches are as tall as a line
LEGEND_PAD = 6  # pixels around and between legend rows


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


# --------------------------------------------------------------------------- legends

LegendEntry = tuple[int, str, tuple[int, int, int]]  # (class index, name, RGB colour)


def legend_entries(
    labels: Tensor | Iterable[Tensor],
    names: Sequence[str],
    palette: Sequence[Sequence[int]],
    ignore_index: int | None = IGNORE_INDEX,
) -> list[LegendEntry]:
    """The classes present in one label map (or any of several), in class order, with their
    names and colours; ``ignore_index`` is left out. A value that is neither a class
    (0..len(names)-1) nor ignored raises ``ValueError``."""
    maps = [labels] if isinstance(labels, Tensor) else list(labels)
    present: set[int] = set()
    for label in maps:
        present.update(int(v) for v in torch.unique(label.detach().cpu()))
    present.discard(ignore_index)  # type: ignore[arg-type]
    strays = sorted(v for v in present if not 0 <= v < len(names))
    if strays:
        raise ValueError(f"label values {strays} are not classes (0..{len(names) - 1})")
    return [(v, str(names[v]), tuple(int(c) for c in palette[v])) for v in sorted(present)]


def _font(size: int = LEGEND_FONT_SIZE) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def legend_panel(entries: Sequence[LegendEntry], height: int) -> np.ndarray:
    """A white ``height x w x 3`` uint8 panel: one swatch and name per entry, top to bottom,
    wrapping into further columns when the entries do not fit the height."""
    font = _font()
    row = LEGEND_FONT_SIZE + LEGEND_PAD
    per_column = max(1, (height - LEGEND_PAD) // row)
    columns = [entries[i : i + per_column] for i in range(0, len(entries), per_column)] or [[]]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [
        max((measure.textlength(name, font=font) for _, name, _ in column), default=0)
        for column in columns
    ]
    column_widths = [LEGEND_PAD + LEGEND_FONT_SIZE + LEGEND_PAD + int(w) + 1 for w in widths]
    panel = Image.new("RGB", (sum(column_widths) + LEGEND_PAD, height), "white")
    draw = ImageDraw.Draw(panel)
    left = 0
    for column, width in zip(columns, column_widths):
        for i, (_, name, colour) in enumerate(column):
            top = LEGEND_PAD + i * row
            x = left + LEGEND_PAD
            draw.rectangle(
                [x, top, x + LEGEND_FONT_SIZE - 1, top + LEGEND_FONT_SIZE - 1],
                fill=colour,
                outline=(0, 0, 0),
            )
            draw.text((x + LEGEND_FONT_SIZE + LEGEND_PAD, top), name, fill="black", font=font)
        left += width
    return np.asarray(panel)


def with_legend(picture: np.ndarray, entries: Sequence[LegendEntry]) -> np.ndarray:
    """``picture`` (H x W x 3 uint8) with a legend panel of ``entries`` on its right; the
    result is ``H' x (W + panel) x 3``, ``H'`` = H unless the legend needs more rows."""
    needed = LEGEND_PAD + max(1, len(entries)) * (LEGEND_FONT_SIZE + LEGEND_PAD)
    height = max(picture.shape[0], min(needed, 4 * picture.shape[0]))
    panel = legend_panel(entries, height)
    sheet = np.full((height, picture.shape[1] + panel.shape[1], 3), 255, dtype=np.uint8)
    sheet[: picture.shape[0], : picture.shape[1]] = picture
    sheet[:, picture.shape[1] :] = panel
    return sheet


def show_figure(
    rows: Sequence[tuple[Tensor, Tensor, Tensor | None]],
    names: Sequence[str],
    palette: Sequence[Sequence[int]],
    titles: Sequence[str] | None = None,
    ignore_index: int | None = IGNORE_INDEX,
) -> Figure:
    """A matplotlib figure with one row per (image 3 x H x W 0..255, prediction H x W, truth
    H x W or None): columns "image | prediction | truth" (truth only when some row has one),
    headed, and one legend of the classes present in the predictions and truths.
    ``titles``: a label per row (e.g. file names). Save it with ``figure.savefig(path)``.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if not rows:
        raise ValueError("show_figure needs at least one row")
    with_truth = any(truth is not None for _, _, truth in rows)
    headers = ["image", "prediction"] + (["truth"] if with_truth else [])
    height, width = rows[0][1].shape[-2:]
    aspect = height / width
    figure = Figure(figsize=(3.2 * len(headers) + 2.2, 3.2 * aspect * len(rows) + 0.6))
    axes = np.asarray(figure.subplots(len(rows), len(headers), squeeze=False))
    maps: list[Tensor] = []
    for r, (image, prediction, truth) in enumerate(rows):
        pictures = [to_rgb(image), colorize(prediction, palette)]
        maps.append(prediction)
        if with_truth:
            pictures.append(
                colorize(truth, palette) if truth is not None else np.full_like(pictures[0], 255)
            )
            if truth is not None:
                maps.append(truth)
        for c, picture in enumerate(pictures):
            axes[r, c].imshow(picture, interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(headers[c])
        if titles is not None:
            axes[r, 0].set_ylabel(titles[r], fontsize=8)
    entries = legend_entries(maps, names, palette, ignore_index)
    handles = [Patch(facecolor=np.array(colour) / 255, label=name) for _, name, colour in entries]
    figure.legend(handles=handles, loc="center right", title="classes", frameon=False)
    figure.subplots_adjust(left=0.03, right=1 - 2.0 / figure.get_figwidth(), wspace=0.05)
    return figure


__all__ = [
    "colorize",
    "comparison_grid",
    "label_image",
    "legend_entries",
    "legend_panel",
    "overlay",
    "show_figure",
    "to_rgb",
    "with_legend",
]
