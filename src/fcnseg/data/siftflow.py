"""SIFT Flow outdoor scenes (Liu et al. 2011) with semantic and geometric labels.

On disk (the SiftFlowDataset archive plus the FCN authors' split files)::

    root/Images/spatial_envelope_256x256_static_8outdoorcategories/ID.jpg    256 x 256 RGB
    root/SemanticLabels/spatial_envelope_256x256_static_8outdoorcategories/ID.mat
        variable ``S``: 0 void, 1..33 semantic classes
    root/GeoLabels/spatial_envelope_256x256_static_8outdoorcategories/ID.mat
        variable ``S``: -1 void, 1..3 geometric classes (0 is treated as void too)
    root/{trainval,test}.txt   the FCN reference's split files: 2,486 and 200 ids (the
                               standard 2,488 / 200 split less two unannotated train images)

The paper scores the 200 ``test`` images; three semantic classes (cow, desert, moon) never
occur there. A split file of another length is read, with a warning.

The paper trains one net with two heads, semantic and geometric (``target="both"``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from fcnseg.data.common import (
    SegmentationDataset,
    Transform,
    check_choice,
    check_sizes,
    check_split,
    check_split_size,
    map_labels,
    read_mat,
    read_rgb,
    read_split,
    require_dir,
    require_files,
)
from fcnseg.data.palettes import voc_palette

logger = logging.getLogger(__name__)

SIFTFLOW_CLASSES = [
    "awning",
    "balcony",
    "bird",
    "boat",
    "bridge",
    "building",
    "bus",
    "car",
    "cow",
    "crosswalk",
    "desert",
    "door",
    "fence",
    "field",
    "grass",
    "moon",
    "mountain",
    "person",
    "plant",
    "pole",
    "river",
    "road",
    "rock",
    "sand",
    "sea",
    "sidewalk",
    "sign",
    "sky",
    "staircase",
    "streetlight",
    "sun",
    "tree",
    "window",
]
SIFTFLOW_GEOMETRIC_CLASSES = ["sky", "horizontal", "vertical"]
SEMANTIC_VOID = (0,)
GEOMETRIC_VOID = (-1, 0)  # -1 marks void; the reference data layer also voids 0
SIFTFLOW_SPLITS = ("trainval", "test")
SIFTFLOW_TARGETS = ("semantic", "geometric", "both")
SUBSET = "spatial_envelope_256x256_static_8outdoorcategories"
SIFTFLOW_SPLIT_SIZES = {"trainval": 2486, "test": 200}  # lines of the reference's files


class SIFTFlow(SegmentationDataset):
    """SIFT Flow; raw void -> ``ignore_index``, raw k -> class k-1 for both labelings.

    ``target``: "semantic" (33 classes), "geometric" (3 classes: sky, horizontal, vertical)
    or "both". With "both" the label is int64 (2, H, W), semantic then geometric, and
    ``classes``/``num_classes`` describe the semantic one (``geometric_classes`` the other).
    Items: image float32 (3, H, W) RGB 0..255; label int64 (H, W) unless "both".
    ``files`` pairs each image with its semantic label file (geometric for "geometric").
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "trainval",
        target: str = "semantic",
        ignore_index: int = 255,
        transform: Transform | None = None,
    ) -> None:
        check_split(split, SIFTFLOW_SPLITS)
        check_choice(target, SIFTFLOW_TARGETS, "target")
        classes = SIFTFLOW_GEOMETRIC_CLASSES if target == "geometric" else SIFTFLOW_CLASSES
        super().__init__(root, split, classes, ignore_index, transform)
        self.target = target
        self.geometric_classes = list(SIFTFLOW_GEOMETRIC_CLASSES)
        self.geometric_palette = voc_palette(len(self.geometric_classes))
        require_dir(self.root, "SIFT Flow root")
        image_dir = require_dir(self.root / "Images" / SUBSET, "SIFT Flow image")
        label_dirs = {
            "semantic": self.root / "SemanticLabels" / SUBSET,
            "geometric": self.root / "GeoLabels" / SUBSET,
        }
        self.targets = ("semantic", "geometric") if target == "both" else (target,)
        for kind in self.targets:
            require_dir(label_dirs[kind], f"SIFT Flow {kind} label")
        size = SIFTFLOW_SPLIT_SIZES[split]
        expected = f"SIFT Flow {split} split (the FCN reference's {split}.txt, {size} ids)"
        self.ids = read_split(self.root / f"{split}.txt", expected)
        check_split_size(self.ids, self.root / f"{split}.txt", size, f"SIFT Flow {split}")
        images = [image_dir / f"{i}.jpg" for i in self.ids]
        self.label_files = [
            tuple(label_dirs[kind] / f"{i}.mat" for kind in self.targets) for i in self.ids
        ]
        pairs = zip(images, self.label_files, strict=True)
        self.files = [(image, labels[0]) for image, labels in pairs]
        require_files(images, "SIFT Flow image")
        for k, kind in enumerate(self.targets):
            require_files((labels[k] for labels in self.label_files), f"SIFT Flow {kind} label")
        logger.debug("SIFT Flow %s (%s): %d images from %s", split, target, len(self.ids), root)

    def _load(self, index: int) -> tuple[Tensor, Tensor]:
        image_path = self.files[index][0]
        raws = [read_mat(path, "S") for path in self.label_files[index]]
        image = read_rgb(image_path)
        sizes = {path: raw.shape for path, raw in zip(self.label_files[index], raws, strict=True)}
        check_sizes({image_path: tuple(image.shape[1:]), **sizes})
        labels = []
        for kind, path, raw in zip(self.targets, self.label_files[index], raws, strict=True):
            if kind == "semantic":
                n, void = len(SIFTFLOW_CLASSES), SEMANTIC_VOID
            else:
                n, void = len(SIFTFLOW_GEOMETRIC_CLASSES), GEOMETRIC_VOID
            labels.append(map_labels(raw, path, n, self.ignore_index, void, shift=1))
        label = torch.stack(labels) if self.target == "both" else labels[0]
        return image, label
