"""Dataset readers: each returns ``(image float32 (C, H, W), label int64 (H, W))`` pairs.

One reader per on-disk layout used in the FCN paper (VOC + SBD, NYUDv2, SIFT Flow,
PASCAL-Context), plus CamVid and a folder-of-PNGs reader for your own data. Every reader
maps its void values to one ``ignore_index`` and raises ``DatasetError`` naming the file.
"""

from fcnseg.data.by_name import DATASET_NAMES, open_dataset
from fcnseg.data.camvid import CamVid
from fcnseg.data.common import DatasetError, SegmentationDataset
from fcnseg.data.context import PascalContext
from fcnseg.data.folder import LabelFolder
from fcnseg.data.in_memory import InMemory
from fcnseg.data.nyud import NYUDv2
from fcnseg.data.palettes import flat_palette, voc_palette
from fcnseg.data.sbd import SBD
from fcnseg.data.siftflow import SIFTFlow
from fcnseg.data.voc import VOC

__all__ = [
    "DATASET_NAMES",
    "open_dataset",
    "SBD",
    "VOC",
    "CamVid",
    "DatasetError",
    "LabelFolder",
    "NYUDv2",
    "PascalContext",
    "SIFTFlow",
    "SegmentationDataset",
    "InMemory",
    "flat_palette",
    "voc_palette",
]
