"""CamVid road scenes in the 11-class SegNet layout (Brostow et al. 2009; Badrinarayanan et al.).

On disk (as distributed with SegNet)::

    root/{split}/NAME.png        RGB frames (360 x 480 in the usual copy)
    root/{split}annot/NAME.png   8-bit single-channel labels, same file name; 0..10 classes, 11 void

A frame's name starts with its sequence (``0001TP_006690``, ``0006R0_f02430``, ``0016E5_08010``,
``Seq05VD_f00000``). The SegNet split shares sequences between train and val (0016E5), so val
overstates how a net does on a sequence it never saw; ``sequences`` and ``exclude_sequences``
hold out whole sequences of a split to measure that (train on the rest, validate on them).
``trainval`` is train and val together (a final model trained with a schedule fixed on val).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from fcnseg.data.common import (
    DatasetError,
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
CAMVID_SPLITS = ("train", "val", "test", "trainval")


def sequence_of(path: Path) -> str:
    """The sequence a CamVid frame belongs to: its name up to the first underscore."""
    return path.stem.split("_", 1)[0]


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Sequence names from a list or a comma-separated string (recipe options are scalars)."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else list(value)
    return tuple(part.strip() for part in parts if part.strip())


class CamVid(SegmentationDataset):
    """CamVid frames and 11-class labels; void (11) becomes ``ignore_index``.

    Items: image float32 (3, H, W) RGB 0..255; label int64 (H, W) in 0..10 or ``ignore_index``.
    Frames and labels are matched by file name; any unmatched file is an error.
    ``sequences`` keeps only the frames of those sequences, ``exclude_sequences`` drops theirs
    (a list, or names separated by commas); a name the split does not hold is an error.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        ignore_index: int = 255,
        transform: Transform | None = None,
        sequences: str | Sequence[str] | None = None,
        exclude_sequences: str | Sequence[str] | None = None,
    ) -> None:
        check_split(split, CAMVID_SPLITS)
        super().__init__(root, split, CAMVID_CLASSES, ignore_index, transform, CAMVID_PALETTE)
        require_dir(self.root, "CamVid root")
        self.files = []
        for part in ("train", "val") if split == "trainval" else (split,):
            image_dir = require_dir(self.root / part, f"CamVid {part} image")
            label_dir = require_dir(self.root / f"{part}annot", f"CamVid {part} label")
            self.files += pair_by_stem(image_dir, label_dir)
        self.files = self._select(_names(sequences), _names(exclude_sequences))
        logger.debug("CamVid %s: %d frames from %s", split, len(self.files), self.root)

    def _select(self, keep: tuple[str, ...], drop: tuple[str, ...]) -> list[tuple[Path, Path]]:
        held = sorted({sequence_of(image) for image, _ in self.files})
        unknown = sorted(set(keep + drop) - set(held))
        if unknown:
            raise DatasetError(
                f"CamVid {self.split} in {self.root} holds no sequence {', '.join(unknown)}; "
                f"its sequences: {', '.join(held)}"
            )
        chosen = [
            (image, label)
            for image, label in self.files
            if (not keep or sequence_of(image) in keep) and sequence_of(image) not in drop
        ]
        if not chosen:
            raise DatasetError(
                f"CamVid {self.split} in {self.root}: no frames left after choosing sequences "
                f"{list(keep) or held} without {list(drop)}"
            )
        return chosen

    def _load(self, index: int) -> tuple[Tensor, Tensor]:
        image_path, label_path = self.files[index]
        raw = read_label_png(label_path)
        image = load_pair(image_path, raw, label_path)
        label = map_labels(raw, label_path, self.num_classes, self.ignore_index, (CAMVID_VOID,))
        return image, label
