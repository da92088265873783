"""PASCAL VOC segmentation (Everingham et al.), and the paper's ``seg11valid`` split.

On disk (the devkit layout)::

    VOCdevkit/VOC{year}/JPEGImages/ID.jpg
    VOCdevkit/VOC{year}/SegmentationClass/ID.png          palette PNGs; indices 0..20, 255 border
    VOCdevkit/VOC{year}/ImageSets/Segmentation/{split}.txt

The FCN paper trains on SBD train and validates on ``seg11valid``: the VOC2011 segmentation
val images that are not in SBD train (736 images), because VOC2011 val and SBD train overlap.
We compute that split from the two lists rather than ship it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from torch import Tensor

from fcnseg.data.common import (
    DatasetError,
    SegmentationDataset,
    Transform,
    check_split,
    check_split_size,
    load_pair,
    map_labels,
    read_label_png,
    read_split,
    require_dir,
    require_files,
    resolve_year_dir,
)

logger = logging.getLogger(__name__)

VOC_CLASSES = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]
VOC_VOID = 255  # object borders and hard regions in VOC's SegmentationClass PNGs
VOC_SPLITS = ("train", "val", "trainval", "seg11valid")
SEG11VALID_SIZE = 736  # the paper's footnote 7: VOC2011 segval images not in SBD train


def seg11valid_ids(voc2011_dir: Path, sbd_root: Path) -> list[str]:
    """VOC2011 segmentation val ids absent from SBD's train.txt, in val.txt order."""
    val_path = voc2011_dir / "ImageSets" / "Segmentation" / "val.txt"
    val = read_split(val_path, "VOC2011 segmentation val (1,112 ids)")
    sbd_train = set(read_split(Path(sbd_root) / "train.txt", "SBD train split (8,498 ids)"))
    ids = [image_id for image_id in val if image_id not in sbd_train]
    if not ids:
        raise DatasetError(f"seg11valid is empty: every id in {voc2011_dir} val is in SBD train")
    check_split_size(ids, f"{val_path} minus SBD train", SEG11VALID_SIZE, "seg11valid")
    return ids


class VOC(SegmentationDataset):
    """PASCAL VOC segmentation; 21 classes, the border value 255 becomes ``ignore_index``.

    ``root`` may be the ``VOCdevkit`` folder (then ``VOC{year}`` inside it is used) or a
    ``VOC{year}`` folder itself. ``year`` defaults to the folder's own year when ``root`` is
    a year folder, else to "2012"; ``split="seg11valid"`` is defined on VOC2011 only (so it
    defaults to "2011" there) and needs ``sbd_root``, SBD's ``dataset`` folder (its train.txt).

    Items: image float32 (3, H, W) RGB 0..255; label int64 (H, W) in 0..20 or ``ignore_index``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        year: str | None = None,
        sbd_root: str | Path | None = None,
        ignore_index: int = 255,
        transform: Transform | None = None,
    ) -> None:
        check_split(split, VOC_SPLITS)
        super().__init__(root, split, VOC_CLASSES, ignore_index, transform)
        require_dir(self.root, "VOC root")
        if year is None:
            named = re.fullmatch(r"VOC(\d{4})", self.root.name)
            own_year = named.group(1) if named and (self.root / "JPEGImages").is_dir() else None
            year = own_year or ("2011" if split == "seg11valid" else "2012")
        self.year = str(year)
        if split == "seg11valid" and self.year != "2011":
            raise DatasetError(
                f"split='seg11valid' is VOC2011 val minus SBD train; got year {self.year} "
                f"(root {self.root})"
            )
        self.year_dir = resolve_year_dir(self.root, self.year)
        if split == "seg11valid":
            if sbd_root is None:
                raise DatasetError(
                    "split='seg11valid' needs sbd_root: SBD's 'dataset' folder holding train.txt"
                )
            ids = seg11valid_ids(self.year_dir, Path(sbd_root))
        else:
            ids = read_split(self.year_dir / "ImageSets" / "Segmentation" / f"{split}.txt")
        self.ids = ids
        self.files = [
            (
                self.year_dir / "JPEGImages" / f"{image_id}.jpg",
                self.year_dir / "SegmentationClass" / f"{image_id}.png",
            )
            for image_id in ids
        ]
        require_files((image for image, _ in self.files), f"VOC{self.year} image")
        require_files((label for _, label in self.files), f"VOC{self.year} label")
        logger.debug("VOC%s %s: %d images from %s", self.year, split, len(ids), self.year_dir)

    def _load(self, index: int) -> tuple[Tensor, Tensor]:
        image_path, label_path = self.files[index]
        raw = read_label_png(label_path)  # palette indices, not colours
        image = load_pair(image_path, raw, label_path)
        label = map_labels(raw, label_path, self.num_classes, self.ignore_index, (VOC_VOID,))
        return image, label
