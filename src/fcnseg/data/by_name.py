"""Datasets by name, for the command line and recipes: ``open_dataset("camvid", root, "val")``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fcnseg.data.camvid import CamVid
from fcnseg.data.common import DatasetError, SegmentationDataset, Transform
from fcnseg.data.context import PascalContext
from fcnseg.data.folder import LabelFolder
from fcnseg.data.nyud import NYUDv2
from fcnseg.data.sbd import SBD
from fcnseg.data.siftflow import SIFTFlow
from fcnseg.data.synthetic import synthetic_split
from fcnseg.data.voc import VOC

DATASET_NAMES = ("camvid", "voc", "sbd", "nyud", "siftflow", "context", "folder", "synthetic")


def open_dataset(
    name: str,
    root: str | Path,
    split: str,
    transform: Transform | None = None,
    **options: Any,
) -> SegmentationDataset:
    """The reader for dataset ``name`` at ``root``; ``options`` go to its constructor.

    Options by dataset: voc ``year``, ``sbd_root``; nyud ``modality``; siftflow ``target``;
    context ``voc_root`` (required). ``folder`` reads ``root/images/<split>/``,
    ``root/labels/<split>/`` and the class list ``root/classes.txt``. ``synthetic`` generates
    shapes in code (no ``root``; splits ``train``, ``val``; options ``seed``, ``train_images``,
    ``val_images``, ``sizes``, ``max_shapes``: :func:`fcnseg.data.synthetic.synthetic_split`).
    An option the reader does not take raises :class:`DatasetError` naming it.
    """
    try:
        return _open(name, root, split, transform, **options)
    except TypeError as error:  # an option the reader's constructor does not take
        raise DatasetError(f"dataset {name!r} rejects the options {options}: {error}") from None


def _open(
    name: str,
    root: str | Path,
    split: str,
    transform: Transform | None = None,
    **options: Any,
) -> SegmentationDataset:
    root = Path(root)
    if name == "camvid":
        return CamVid(root, split, transform=transform, **options)
    if name == "voc":
        return VOC(root, split, transform=transform, **options)
    if name == "sbd":
        return SBD(root, split, transform=transform, **options)
    if name == "nyud":
        return NYUDv2(root, split, transform=transform, **options)
    if name == "siftflow":
        return SIFTFlow(root, split, transform=transform, **options)
    if name == "context":
        if "voc_root" not in options:
            raise DatasetError("dataset 'context' needs the option voc_root (the VOC2010 folder)")
        return PascalContext(root, split=split, transform=transform, **options)
    if name == "folder":
        return LabelFolder(
            root / "images" / split,
            root / "labels" / split,
            root / "classes.txt",
            transform=transform,
            **options,
        )
    if name == "synthetic":
        if transform is not None:
            raise DatasetError("the synthetic dataset takes no transform")
        return synthetic_split(split, **options)  # type: ignore[return-value]
    raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
