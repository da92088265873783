"""Predict files and folders: decoding in DataLoader workers, equal-size images batched.

:func:`predict_images` is what ``fcnseg predict`` runs on images. It walks files and folders
(:func:`list_images`: not recursively; image extensions of ``IMAGE_EXTENSIONS``, sorted) and
writes, for each image, into one output folder:

- ``<stem>.png``: the label map as an indexed ("P") PNG (values are class indices, the net's
  palette);
- ``<stem>_overlay.png``: the image with the class colours blended in and, on its right, a
  legend of the classes present (``legend=False``: the bare overlay, the image's size);
- with ``show=True``, ``<stem>_show.png``: image | prediction (| truth, with ``truth_dir``)
  with column headers and a legend (:func:`fcnseg.inference.visualize.show_figure`).

Output names must be unique (:func:`output_paths`): two inputs with the same stem (e.g.
``a/x.jpg`` and ``b/x.png``), or an input named like another's overlay (``x_overlay.png``),
raise before anything is written, compared case-insensitively so that a run behaves the same
on every file system. So does an output that would overwrite an input image.

Images are decoded (and turned upright by EXIF) in ``workers`` DataLoader processes while the
net runs, consecutive images of equal size are scored ``batch_size`` at a time by
:func:`fcnseg.segment` (all of whose options, tiles and TTA, apply), and every output is
written atomically (temporary file, then rename). An image that cannot be decoded does not
stop the run: it is recorded in :attr:`PredictResult.failed` (with a message naming the file)
and the rest are written.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from fcnseg.data.common import IMAGE_EXTENSIONS, DatasetError, read_label_png
from fcnseg.errors import FcnsegError, InputNotFoundError
from fcnseg.inference.predict import (
    RGB_CHANNELS,
    SegmentError,
    class_names,
    in_channels_of,
    palette_for,
)
from fcnseg.inference.segment import as_tensor, check_options, segment
from fcnseg.inference.visualize import (
    IGNORE_INDEX,
    label_image,
    legend_entries,
    overlay,
    show_figure,
    with_legend,
)

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- inputs and outputs


@dataclass
class PredictResult:
    """What :func:`predict_images` did: ``written`` (image, label PNG, overlay PNG) per image
    and ``failed`` (image, message naming it) per image that could not be read."""

    written: list[tuple[Path, Path, Path]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def list_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, and each folder's image files (not recursive, sorted); each file once.

    Raises ``InputNotFoundError`` naming an input that does not exist and ``FcnsegError`` naming
    a folder without images.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for entry in map(Path, inputs):
        if entry.is_dir():
            files = sorted(
                p for p in entry.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not files:
                raise FcnsegError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {entry}")
        elif entry.is_file():
            files = [entry]
        else:
            raise InputNotFoundError(f"input {entry} does not exist")
        for path in files:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                found.append(path)
    return found


def output_paths(images: Sequence[Path], out_dir: str | os.PathLike) -> list[tuple[Path, Path]]:
    """``(out_dir/<stem>.png, out_dir/<stem>_overlay.png)`` per image; raises on any clash.

    A clash is two images wanting one output name (compared case-insensitively) or an output
    that is one of the images; the message names both files.
    """
    out_dir = Path(out_dir)
    owners: dict[str, Path] = {}
    paths = []
    for image in images:
        names = (f"{image.stem}.png", f"{image.stem}_overlay.png")
        for name in names:
            other = owners.setdefault(name.casefold(), image)
            if other != image:
                raise FcnsegError(
                    f"{other} and {image} would both write {out_dir / name}; "
                    "rename one or predict them into separate --out folders"
                )
        paths.append((out_dir / names[0], out_dir / names[1]))
    inputs = {image.resolve(): image for image in images}
    for label_path, overlay_path in paths:
        for path in (label_path, overlay_path):
            if path.resolve() in inputs:
                raise FcnsegError(
                    f"writing {path} would overwrite the input image {inputs[path.resolve()]}; "
                    "choose another output folder"
                )
    return paths


# --------------------------------------------------------------------------- predicting


class ImageFiles(Dataset):
    """Item ``i``: ``(i, image (3, H, W) uint8 or None, error message or "")``; decoding
    failures are returned, not raised, so one bad file does not stop a DataLoader."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, Tensor | None, str]:
        try:
            return index, as_tensor(self.paths[index], RGB_CHANNELS), ""
        except SegmentError as error:
            return index, None, str(error)


def _runs(
    loader: Iterator[tuple[int, Tensor | None, str]], batch_size: int
) -> Iterator[list[tuple[int, Tensor | None, str]]]:
    """Consecutive decoded images of one size, at most ``batch_size`` of them; a failed image
    comes alone."""
    run: list[tuple[int, Tensor | None, str]] = []
    for item in loader:
        image = item[1]
        if run and (
            image is None
            or run[0][1] is None
            or len(run) == batch_size
            or run[0][1].shape != image.shape
        ):
            yield run
            run = []
        run.append(item)
    if run:
        yield run


def write_atomic(path: Path, write: Callable[[str], object]) -> None:
    """``write(temporary)`` to a temporary file beside ``path``, then rename it to ``path``:
    an interrupted run never leaves a half-written file under the final name."""
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix
    )
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_atomic(picture: Image.Image, path: Path) -> None:
    """``picture.save(path)`` (PNG) through :func:`write_atomic`."""
    write_atomic(path, lambda temporary: picture.save(temporary, format="PNG"))


def _truth(
    truth_dir: Path | None, stem: str, num_classes: int, size: tuple[int, int]
) -> Tensor | None:
    """``truth_dir/<stem>.png`` as class indices (values >= num_classes shown as unlabelled)."""
    if truth_dir is None:
        return None
    path = truth_dir / f"{stem}.png"
    if not path.is_file():
        logger.warning("no truth for %s in %s", stem, truth_dir)
        return None
    values = torch.from_numpy(read_label_png(path).astype(np.int64))
    if tuple(values.shape) != size:
        raise DatasetError(f"truth {path} is {tuple(values.shape)}, its image {size}")
    values[values >= num_classes] = IGNORE_INDEX
    return values


def predict_images(
    model: nn.Module,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    alpha: float = 0.5,
    legend: bool = True,
    show: bool = False,
    truth_dir: str | os.PathLike | None = None,
    batch_size: int = 4,
    workers: int = 2,
    progress: Callable[..., Any] | None = None,
    **segment_options: Any,
) -> PredictResult:
    """Predict every image of ``inputs`` (files and folders) into ``out_dir``; see the module doc.

    ``alpha`` (0..1): the colour's share of the overlay. ``workers``: DataLoader processes
    decoding images (0: in this process). ``progress(total=n)`` makes a progress bar (e.g.
    ``tqdm``) advanced per image. ``segment_options``: :func:`fcnseg.segment`'s keywords
    (``tile``, ``overlap``, ``tile_above``, ``flip``, ``scales``, ``crf``, ``preprocess``,
    ``dtype``).
    Setup problems (inputs, names, alpha, channels) raise before anything is written.
    """
    if not 0.0 <= alpha <= 1.0:
        raise SegmentError(f"alpha must lie in 0..1, got {alpha}")
    if workers < 0:
        raise SegmentError(f"workers must be >= 0, got {workers}")
    check_options(model, batch_size=batch_size, **segment_options)
    channels = in_channels_of(model)
    if channels != RGB_CHANNELS:
        raise SegmentError(
            f"the net takes {channels} input channels, but predict reads image files as RGB "
            f"({RGB_CHANNELS} channels); score such data with evaluate on its dataset reader"
        )
    images = list_images(inputs)
    targets = output_paths(images, out_dir)
    truth_root = None if truth_dir is None else Path(truth_dir)
    if truth_root is not None and not truth_root.is_dir():
        raise FileNotFoundError(f"truth folder {truth_root} does not exist")
    names, palette = class_names(model), palette_for(model)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    loader = DataLoader(
        ImageFiles(images),
        batch_size=None,  # one image per item; equal sizes are grouped below
        num_workers=workers,
        prefetch_factor=2 * batch_size if workers else None,
    )
    result = PredictResult()
    bar = progress(total=len(images)) if progress is not None else None
    try:
        for run in _runs(iter(loader), batch_size):
            if run[0][1] is None:
                index, _, message = run[0]
                result.failed.append((images[index], message))
                logger.debug("skipped %s: %s", images[index], message)
            else:
                labels = segment(model, [image for _, image, _ in run], batch_size=batch_size,
                                 **segment_options)  # fmt: skip
                for (index, image, _), label in zip(run, labels):
                    label_path, overlay_path = targets[index]
                    truth = _truth(truth_root, images[index].stem, len(names), tuple(label.shape))
                    _write(image, label, truth, label_path, overlay_path, names, palette, alpha,
                           legend, show)  # fmt: skip
                    result.written.append((images[index], label_path, overlay_path))
                    logger.info("%s -> %s, %s", images[index], label_path, overlay_path)
            if bar is not None:
                bar.update(len(run))
    finally:
        if bar is not None:
            bar.close()
    return result


def _write(
    image: Tensor,
    label: Tensor,
    truth: Tensor | None,
    label_path: Path,
    overlay_path: Path,
    names: Sequence[str],
    palette: Sequence[Sequence[int]],
    alpha: float,
    legend: bool,
    show: bool,
) -> None:
    save_atomic(label_image(label, palette), label_path)
    picture = overlay(image.float(), label, palette, alpha)  # (H, W, 3) uint8
    if legend:
        picture = with_legend(picture, legend_entries(label, names, palette))
    save_atomic(Image.fromarray(picture), overlay_path)
    if show:
        figure = show_figure([(image.float(), label, truth)], names, palette)
        show_path = label_path.with_name(f"{label_path.stem}_show.png")
        write_atomic(show_path, lambda temporary: figure.savefig(temporary, dpi=100))


__all__ = [
    "ImageFiles",
    "PredictResult",
    "list_images",
    "output_paths",
    "predict_images",
    "save_atomic",
    "write_atomic",
]
