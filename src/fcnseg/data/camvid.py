"""CamVid road scenes in the 11-class SegNet layout (Brostow et al. 2009; Badrinarayanan et al.).

On disk (as distributed with SegNet)::

    root/{split}/NAME.png        RGB frames (360 x 480 in the usual copy)
    root/{split}annot/NAME.png   8-bit single-channel labels, same file name; 0..10 classes, 11 void
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import Tensor

from fcnseg.data.common import (
    SegmentationDataset,
    Transform,
    check_split,
    load_pair,
    map_labels,
    pair_by_stem,
    read_label_png,
    require_dir,
)

logger = logging.getLogger(__name__)

CAMVID_CLASSES = [
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Sidewalk",  # "Pavement" in SegNet's colour table
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
]
CAMVID_VOID = 11  # "Unlabelled" in SegNet's label maps
# The colours SegNet's CamVid tools draw each class with.
CAMVID_PALETTE = [
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
]
CAMVID_SPLITS = ("train", "val", "test")


class CamVid(SegmentationDataset):
    """CamVid frames and 11-class labels; void (11) becomes ``ignore_index``.

    Items: image float32 (3, H, W) RGB 0..255; label int64 (H, W) in 0..10 or ``ignore_index``.
    Frames and labels are matched by file name; any unmatched file is an error.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        ignore_index: int = 255,
        transform: Transform | None = None,
    ) -> None:
        check_split(split, CAMVID_SPLITS)
        super().__init__(root, split, CAMVID_CLASSES, ignore_index, transform, CAMVID_PALETTE)
        require_dir(self.root, "CamVid root")
        image_dir = require_dir(self.root / split, f"CamVid {split} image")
        label_dir = require_dir(self.root / f"{split}annot", f"CamVid {split} label")
        self.files = pair_by_stem(image_dir, label_dir)
        logger.debug("CamVid %s: %d frames from %s", split, len(self.files), self.root)

    def _load(self, index: int) -> tuple[Tensor, Tensor]:
        image_path, label_path = self.files[index]
        raw = read_label_png(label_path)
        image = load_pair(image_path, raw, label_path)
        label = map_labels(raw, label_path, self.num_classes, self.ignore_index, (CAMVID_VOID,))
        return image, label
