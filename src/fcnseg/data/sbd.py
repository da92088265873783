"""SBD, the Semantic Boundaries Dataset (Hariharan et al. 2011): extra VOC class labels.

On disk (the ``dataset`` folder of the SBD download)::

    dataset/img/ID.jpg
    dataset/cls/ID.mat      MATLAB 5 file, 1x1 struct GTcls; GTcls.Segmentation is the
                            uint8 label map, 0..20 (the 21 VOC classes)
    dataset/{train,val}.txt  8,498 and 2,857 ids

The FCN paper trains on SBD train (and validates on VOC's ``seg11valid``, see voc.py).
Reading .mat files needs scipy.
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
    read_mat,
    read_split,
    require_dir,
    require_files,
)
from fcnseg.data.voc import VOC_CLASSES, VOC_VOID

logger = logging.getLogger(__name__)

SBD_SPLITS = ("train", "val")


class SBD(SegmentationDataset):
    """SBD class labels for VOC images; 21 VOC classes, 255 (if present) -> ``ignore_index``.

    ``root`` is SBD's ``dataset`` folder. Items: image float32 (3, H, W) RGB 0..255; label
    int64 (H, W) in 0..20 or ``ignore_index``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        ignore_index: int = 255,
        transform: Transform | None = None,
    ) -> None:
        check_split(split, SBD_SPLITS)
        super().__init__(root, split, VOC_CLASSES, ignore_index, transform)
        require_dir(self.root, "SBD dataset")
        require_dir(self.root / "img", "SBD image")
        require_dir(self.root / "cls", "SBD class label")
        self.ids = read_split(self.root / f"{split}.txt", f"SBD {split} split (ids, one per line)")
        self.files = [
            (self.root / "img" / f"{image_id}.jpg", self.root / "cls" / f"{image_id}.mat")
            for image_id in self.ids
        ]
        require_files((image for image, _ in self.files), "SBD image")
        require_files((label for _, label in self.files), "SBD label")
        logger.debug("SBD %s: %d images from %s", split, len(self.ids), self.root)

    def _load(self, index: int) -> tuple[Tensor, Tensor]:
        image_path, label_path = self.files[index]
        raw = read_mat(label_path, "GTcls", "Segmentation")
        image = load_pair(image_path, raw, label_path)
        label = map_labels(raw, label_path, self.num_classes, self.ignore_index, (VOC_VOID,))
        return image, label
