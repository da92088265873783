"""PASCAL-Context (Mottaghi et al. 2014), the 59-class task, as scored by the FCN paper.

On disk::

    root/trainval/ID.mat      variable ``LabelMap``: full labelling with the 459 class ids of
                              labels.txt (0 where nothing is labelled)
    root/labels.txt           "ID: name" per line, the 459 full classes (1: accordion, ...)
    voc_root/VOC2010/JPEGImages/ID.jpg
    voc_root/VOC2010/ImageSets/Main/{train,val}.txt   4,998 and 5,105 ids

The 59-class task keeps the 59 most frequent classes. Like the reference data layer, every
pixel of any other class (and unlabelled pixels) becomes class 0, "background", which is
scored as a class: the nets have 60 outputs, so ``num_classes`` is 60 and no pixel is mapped
to ``ignore_index``. Three task names differ from labels.txt (diningtable = table,
bedcloth = bedclothes, clothes = cloth); names are compared without spaces.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fcnseg.data.common import (
    DatasetError,
    SegmentationDataset,
    Transform,
    check_sizes,
    check_split,
    check_split_size,
    read_mat,
    read_rgb,
    read_split,
    require_dir,
    require_file,
    require_files,
    resolve_year_dir,
)
from fcnseg.data.voc import VOC_CLASSES

logger = logging.getLogger(__name__)

# Model output order: background, the 20 VOC classes, then 39 stuff and object classes.
CONTEXT_CLASSES = VOC_CLASSES + [
    "bag",
    "bed",
    "bench",
    "book",
    "building",
    "cabinet",
    "ceiling",
    "clothes",
    "computer",
    "cup",
    "door",
    "fence",
    "floor",
    "flower",
    "food",
    "grass",
    "ground",
    "keyboard",
    "light",
    "mountain",
    "mouse",
    "curtain",
    "platform",
    "sign",
    "plate",
    "road",
    "rock",
    "shelves",
    "sidewalk",
    "sky",
    "snow",
    "bedcloth",
    "track",
    "tree",
    "truck",
    "wall",
    "water",
    "window",
    "wood",
]
# task name -> name in labels.txt, where they differ
FULL_NAME = {"diningtable": "table", "bedcloth": "bedclothes", "clothes": "cloth"}
CONTEXT_SPLITS = ("train", "val")
CONTEXT_SPLIT_SIZES = {"train": 4998, "val": 5105}  # VOC2010 ImageSets/Main lengths


def read_full_classes(path: Path) -> dict[str, int]:
    """labels.txt as {name without spaces: id}; raise naming the file and a bad line."""
    require_file(path, "PASCAL-Context class list")
    ids: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, name = line.partition(":")
        if not sep or not key.strip().isdigit() or not name.strip():
            raise DatasetError(f"{path} line {number}: expected 'ID: name', got {line!r}")
        ids[name.replace(" ", "").strip()] = int(key)
    return ids


def context_lookup(full_ids: dict[str, int], path: Path) -> np.ndarray:
    """A table from full class id (0..max id) to task class (0 background, 1..59)."""
    lookup = np.zeros(max(full_ids.values(), default=0) + 1, dtype=np.int64)
    for task_index, name in enumerate(CONTEXT_CLASSES[1:], start=1):
        full_name = FULL_NAME.get(name, name)
        if full_name not in full_ids:
            raise DatasetError(f"{path} lacks the class {full_name!r} of the 59-class task")
        lookup[full_ids[full_name]] = task_index
    return lookup


class PascalContext(SegmentationDataset):
    """PASCAL-Context 59 classes + background (60 outputs) on VOC2010 images.

    ``root`` is the Context annotation folder (``trainval/``, ``labels.txt``); ``voc_root``
    is ``VOCdevkit`` or its ``VOC2010`` folder. Items: image float32 (3, H, W) RGB 0..255;
    label int64 (H, W) in 0..59 (0 background, see the module docstring).
    """

    def __init__(
        self,
        root: str | Path,
        voc_root: str | Path,
        split: str = "train",
        ignore_index: int = 255,
        transform: Transform | None = None,
    ) -> None:
        check_split(split, CONTEXT_SPLITS)
        super().__init__(root, split, CONTEXT_CLASSES, ignore_index, transform)
        require_dir(self.root, "PASCAL-Context root")
        label_dir = require_dir(self.root / "trainval", "PASCAL-Context label")
        labels_txt = self.root / "labels.txt"
        self.lookup = context_lookup(read_full_classes(labels_txt), labels_txt)
        self.voc_dir = resolve_year_dir(Path(voc_root), "2010", "PASCAL-Context VOC")
        split_file = self.voc_dir / "ImageSets" / "Main" / f"{split}.txt"
        size = CONTEXT_SPLIT_SIZES[split]
        self.ids = read_split(split_file, f"VOC2010 Main {split} list ({size} ids)")
        check_split_size(self.ids, split_file, size, f"PASCAL-Context {split}")
        self.files = [
            (self.voc_dir / "JPEGImages" / f"{i}.jpg", label_dir / f"{i}.mat") for i in self.ids
        ]
        require_files((image for image, _ in self.files), "VOC2010 image")
        require_files((label for _, label in self.files), "PASCAL-Context label")
        logger.debug("PASCAL-Context %s: %d images from %s", split, len(self.ids), self.root)

    def _load(self, index: int) -> tuple[Tensor, Tensor]:
        image_path, label_path = self.files[index]
        raw = read_mat(label_path, "LabelMap")
        image = read_rgb(image_path)
        check_sizes({image_path: tuple(image.shape[1:]), label_path: raw.shape})
        if raw.dtype.kind not in "iu" and not np.array_equal(raw, np.round(raw)):
            raise DatasetError(f"label {label_path} holds non-integer values")
        raw = raw.astype(np.int64)
        bad = (raw < 0) | (raw >= len(self.lookup))
        if bad.any():
            values = np.unique(raw[bad]).tolist()[:5]
            raise DatasetError(
                f"label {label_path} has values {values} outside the full classes "
                f"(0..{len(self.lookup) - 1} in {self.root / 'labels.txt'})"
            )
        return image, torch.from_numpy(self.lookup[raw])
