"""NYUDv2 indoor RGB-D scenes, 40-class task of Gupta et al. (CVPR 2013), as used by FCN.

On disk (the FCN authors' ``nyud`` archive, the layout their data layer reads)::

    root/data/images/img_ID.png   RGB, 425 x 560
    root/data/depth/img_ID.png    single-channel 16-bit depth, millimetres (Gupta et al.)
    root/data/hha/img_ID.png      HHA encoding of depth (disparity, height, angle), 0..255
    root/segmentation/img_ID.mat  variable ``segmentation``: 0 void, 1..40 classes
    root/{train,val,test}.txt     ids (train 381 + val 414 = Gupta's 795-image train; test 654)

The paper's split is the standard one: ``trainval`` (795 images) to train, ``test`` (654) to
score. A split file of another length is read, with a warning that its figures will not
compare to the paper's.

The paper's NYUDv2 experiments compare RGB, depth, HHA and early RGB-D fusion inputs.
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
    check_choice,
    check_sizes,
    check_split,
    check_split_size,
    map_labels,
    read_array,
    read_mat,
    read_rgb,
    read_split,
    require_dir,
    require_files,
)

logger = logging.getLogger(__name__)

NYUD_CLASSES = [
    "wall",
    "floor",
    "cabinet",
    "bed",
    "chair",
    "sofa",
    "table",
    "door",
    "window",
    "bookshelf",
    "picture",
    "counter",
    "blinds",
    "desk",
    "shelves",
    "curtain",
    "dresser",
    "pillow",
    "mirror",
    "floor mat",
    "clothes",
    "ceiling",
    "books",
    "refridgerator",  # sic, as spelled in the 40-class task's list
    "television",
    "paper",
    "towel",
    "shower curtain",
    "box",
    "whiteboard",
    "person",
    "night stand",
    "toilet",
    "sink",
    "lamp",
    "bathtub",
    "bag",
    "otherstructure",
    "otherfurniture",
    "otherprop",
]
NYUD_VOID = 0  # raw label 0 is void; raw k (1..40) is class k-1
NYUD_SPLITS = ("train", "val", "trainval", "test")
# modality -> the data/ subfolders stacked, in channel order
NYUD_MODALITIES = {
    "rgb": ("images",),
    "depth": ("depth",),
    "hha": ("hha",),
    "rgbd": ("images", "depth"),
    "rgbhha": ("images", "hha"),  # late fusion (fcn_latefusion): RGB then HHA
}
_CHANNELS = {"images": 3, "depth": 1, "hha": 3}
# The reference's split lengths: Gupta et al.'s train (381 + 414 val) and test.
NYUD_SPLIT_SIZES = {"train": 381, "val": 414, "trainval": 795, "test": 654}
DEPTH_ENCODINGS = ("mm", "log")  # stored millimetres, or their natural log (reference RGB-D)


def _read_input(kind: str, path: Path, depth: str = "mm") -> Tensor:
    """One input source as float32 (C, H, W), raw values (depth: millimetres or their log)."""
    if kind == "images":
        return read_rgb(path)
    array = read_array(path)
    expected = (2,) if kind == "depth" else (3,)
    if array.ndim not in expected or (kind == "hha" and array.shape[2] != 3):
        raise DatasetError(f"{kind} image {path} has shape {array.shape}; expected {kind} layout")
    if kind == "depth":
        array = array[np.newaxis].astype(np.float32)
        if depth == "log":  # the reference's early fusion input; 0 (no reading) -> log 1 = 0
            array = np.log(np.maximum(array, 1.0))
    else:
        array = array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


class NYUDv2(SegmentationDataset):
    """NYUDv2 with 40 classes; raw 0 (void) -> ``ignore_index``, raw k -> k-1.

    ``modality`` picks the input: "rgb" (3, H, W) 0..255; "depth" (1, H, W) the stored PNG
    values, millimetres; "hha" (3, H, W) 0..255; "rgbd" (4, H, W) RGB then depth; "rgbhha"
    (6, H, W) RGB then HHA. ``depth="log"`` gives the natural log of the millimetres instead
    (what the reference RGB-D net reads, before subtracting its mean log depth 7.844).
    ``split="trainval"`` reads trainval.txt when present, else train.txt then val.txt.
    ``files`` pairs the first input of ``modality`` with the label; ``inputs`` lists all.
    Items: label int64 (H, W) in 0..39 or ``ignore_index``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        modality: str = "rgb",
        depth: str = "mm",
        ignore_index: int = 255,
        transform: Transform | None = None,
    ) -> None:
        check_split(split, NYUD_SPLITS)
        check_choice(modality, NYUD_MODALITIES, "modality")
        check_choice(depth, DEPTH_ENCODINGS, "depth")
        super().__init__(root, split, NYUD_CLASSES, ignore_index, transform)
        self.modality = modality
        self.depth = depth
        self.sources = NYUD_MODALITIES[modality]
        require_dir(self.root, "NYUDv2 root")
        for kind in self.sources:
            require_dir(self.root / "data" / kind, f"NYUDv2 {kind}")
        require_dir(self.root / "segmentation", "NYUDv2 label")
        expected = f"NYUDv2 {split} split ({NYUD_SPLIT_SIZES[split]} ids, one per line)"
        if split == "trainval" and not (self.root / "trainval.txt").is_file():
            self.ids = read_split(self.root / "train.txt", "NYUDv2 train split (381 ids)")
            self.ids += read_split(self.root / "val.txt", "NYUDv2 val split (414 ids)")
            check_split_size(self.ids, self.root / "train.txt + val.txt", 795, "NYUDv2 trainval")
        else:
            self.ids = read_split(self.root / f"{split}.txt", expected)
            check_split_size(
                self.ids, self.root / f"{split}.txt", NYUD_SPLIT_SIZES[split], f"NYUDv2 {split}"
            )
        self.inputs = [
            tuple(self.root / "data" / kind / f"img_{i}.png" for kind in self.sources)
            for i in self.ids
        ]
        labels = [self.root / "segmentation" / f"img_{i}.mat" for i in self.ids]
        self.files = [(paths[0], label) for paths, label in zip(self.inputs, labels, strict=True)]
        for k, kind in enumerate(self.sources):
            require_files((paths[k] for paths in self.inputs), f"NYUDv2 {kind}")
        require_files(labels, "NYUDv2 label")
        logger.debug("NYUDv2 %s (%s): %d images from %s", split, modality, len(self.ids), root)

    @property
    def in_channels(self) -> int:
        """Input channels for this modality (3, 1, 3, 4 or 6)."""
        return sum(_CHANNELS[kind] for kind in self.sources)

    def _load(self, index: int) -> tuple[Tensor, Tensor]:
        label_path = self.files[index][1]
        raw = read_mat(label_path, "segmentation")
        paths = self.inputs[index]
        parts = [
            _read_input(kind, p, self.depth) for kind, p in zip(self.sources, paths, strict=True)
        ]
        sizes = {p: tuple(x.shape[1:]) for p, x in zip(paths, parts, strict=True)}
        check_sizes({**sizes, label_path: raw.shape})
        label = map_labels(
            raw, label_path, self.num_classes, self.ignore_index, (NYUD_VOID,), shift=1
        )
        return torch.cat(parts), label
