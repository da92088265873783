"""Builders of tiny on-disk copies of every dataset layout, in the real file formats.

conftest.py wraps each ``build_*`` as a fixture over ``tmp_path``; tests import the helpers
and constants from here (a uniquely named module, so it cannot clash with other test folders).

Each image is H x W = 16 x 20. Label maps tile a known list of raw values over the pixels
(``tiled``), so tests can recompute the expected mapping.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from fcnseg.data.context import CONTEXT_CLASSES, FULL_NAME
from fcnseg.data.palettes import flat_palette, voc_palette

H, W = 16, 20


def tiled(values: list[int], dtype: type = np.uint8, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    """``values`` repeated row-major over an (H, W) map."""
    return np.resize(np.asarray(values), shape).astype(dtype)


def rgb(seed: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    """A random (H, W, 3) uint8 image."""
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def write_image(path: Path, array: np.ndarray) -> Path:
    """Save an array with PIL (format from the suffix), making parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_palette_png(path: Path, indices: np.ndarray) -> Path:
    """Save a VOC-style palette ("P") PNG holding ``indices``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    image.putpalette(flat_palette(voc_palette(256)))
    image.save(path)
    return path


def write_mat(path: Path, variables: dict) -> Path:
    """Save a MATLAB 5 .mat file, making parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, variables)
    return path


def truncate(path: Path) -> None:
    """Cut a file to half its bytes (a decoder sees a valid header, then runs out)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


# Raw values per layout: every class edge plus the void values.
CAMVID_RAW = [0, 3, 10, 11]  # 11 void
VOC_RAW = [0, 1, 20, 255]  # 255 border
NYUD_RAW = [0, 1, 40, 7]  # 0 void, k -> k-1
SIFT_SEMANTIC_RAW = [0, 1, 33, 5]  # 0 void
SIFT_GEOMETRIC_RAW = [-1, 1, 3, 0]  # -1 (and 0) void


def build_camvid_root(tmp_path: Path) -> Path:
    """root/{train,val}/*.png and root/{train,val}annot/*.png: 3 train and 2 val frames."""
    root = tmp_path / "camvid"
    for split, names in (("train", ["0001TP_a", "0001TP_b", "Seq05_c"]), ("val", ["v1", "v2"])):
        for k, name in enumerate(names):
            write_image(root / split / f"{name}.png", rgb(k))
            write_image(root / f"{split}annot" / f"{name}.png", tiled(CAMVID_RAW))
    return root


def build_sbd_root(tmp_path: Path) -> Path:
    """SBD ``dataset``: img/*.jpg, cls/*.mat (struct GTcls), train.txt, val.txt."""
    root = tmp_path / "benchmark_RELEASE" / "dataset"
    train, val = ["2008_000001", "2008_000002", "2011_000003"], ["2008_000010"]
    for k, image_id in enumerate(train + val):
        write_image(root / "img" / f"{image_id}.jpg", rgb(k))
        boundaries = np.empty((21, 1), dtype=object)
        for c in range(21):
            boundaries[c, 0] = np.zeros((H, W), dtype=np.uint8)
        gtcls = {
            "Segmentation": tiled([0, 1, 20, 15]),
            "Boundaries": boundaries,
            "CategoriesPresent": np.array([1, 15, 20], dtype=np.uint8),
        }
        write_mat(root / "cls" / f"{image_id}.mat", {"GTcls": gtcls})
    write_lines(root / "train.txt", train)
    write_lines(root / "val.txt", val)
    return root


def build_voc_devkit(tmp_path: Path) -> Path:
    """VOCdevkit with VOC2012 (train 2, val 2) and VOC2011 (val 3, of which 2 in SBD train)."""
    devkit = tmp_path / "VOCdevkit"
    sets = {
        "2012": {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033", "2011_000005"]},
        "2011": {"train": ["2007_000032"], "val": ["2008_000001", "2007_000033", "2011_000003"]},
    }
    for year, splits in sets.items():
        year_dir = devkit / f"VOC{year}"
        for split, ids in splits.items():
            write_lines(year_dir / "ImageSets" / "Segmentation" / f"{split}.txt", ids)
            for k, image_id in enumerate(ids):
                write_image(year_dir / "JPEGImages" / f"{image_id}.jpg", rgb(k))
                write_palette_png(
                    year_dir / "SegmentationClass" / f"{image_id}.png", tiled(VOC_RAW)
                )
        trainval = splits["train"] + splits["val"]
        write_lines(year_dir / "ImageSets" / "Segmentation" / "trainval.txt", trainval)
    return devkit


def build_nyud_root(tmp_path: Path) -> Path:
    """data/{images,depth,hha}/img_ID.png, segmentation/img_ID.mat, {train,val,test}.txt."""
    root = tmp_path / "nyud"
    splits = {"train": ["5003", "5004"], "val": ["5010"], "test": ["5001", "5002"]}
    for split, ids in splits.items():
        write_lines(root / f"{split}.txt", ids)
        for k, image_id in enumerate(ids):
            write_image(root / "data" / "images" / f"img_{image_id}.png", rgb(k))
            depth = tiled([500, 1000, 2500, 9999], np.uint16)  # millimetres
            write_image(root / "data" / "depth" / f"img_{image_id}.png", depth)
            write_image(root / "data" / "hha" / f"img_{image_id}.png", rgb(k + 100))
            label = {"segmentation": tiled(NYUD_RAW)}
            write_mat(root / "segmentation" / f"img_{image_id}.mat", label)
    return root


def build_siftflow_root(tmp_path: Path) -> Path:
    """Images/, SemanticLabels/, GeoLabels/ (subset folder each), trainval.txt, test.txt."""
    root = tmp_path / "siftflow"
    subset = "spatial_envelope_256x256_static_8outdoorcategories"
    splits = {"trainval": ["coast_arnat59", "forest_for15", "street_a232"], "test": ["tall_a1"]}
    for split, ids in splits.items():
        write_lines(root / f"{split}.txt", ids)
        for k, image_id in enumerate(ids):
            write_image(root / "Images" / subset / f"{image_id}.jpg", rgb(k))
            # the real files hold doubles (semantic) and int16-ish values with -1 (geometric)
            semantic = {"S": tiled(SIFT_SEMANTIC_RAW, np.float64), "names": np.array(["x"])}
            write_mat(root / "SemanticLabels" / subset / f"{image_id}.mat", semantic)
            geometric = {"S": tiled(SIFT_GEOMETRIC_RAW, np.int16)}
            write_mat(root / "GeoLabels" / subset / f"{image_id}.mat", geometric)
    return root


# Full PASCAL-Context ids used by the fixture: each of the 59 task classes gets id 100 + k
# (spelled as in labels.txt), and two non-task classes exist.
CONTEXT_OTHER_IDS = {"accordion": 1, "air conditioner": 3}


def context_full_ids() -> dict[str, int]:
    ids = dict(CONTEXT_OTHER_IDS)
    for k, name in enumerate(CONTEXT_CLASSES[1:], start=1):
        ids[FULL_NAME.get(name, name)] = 100 + k
    return ids


def build_context_roots(tmp_path: Path) -> tuple[Path, Path]:
    """(Context folder with trainval/*.mat + labels.txt, VOCdevkit with VOC2010)."""
    root, devkit = tmp_path / "context", tmp_path / "VOCdevkit"
    ids = context_full_ids()
    write_lines(root / "labels.txt", [f"{i}: {name}" for name, i in sorted(ids.items())])
    voc_dir = devkit / "VOC2010"
    splits = {"train": ["2008_000002", "2008_000003"], "val": ["2008_000007"]}
    # raw LabelMap: unlabelled 0, two non-task classes, aeroplane (task 1), table (task 11),
    # wood (task 59)
    raw = tiled([0, 1, 3, ids["aeroplane"], ids["table"], ids["wood"]], np.uint16)
    for split, split_ids in splits.items():
        write_lines(voc_dir / "ImageSets" / "Main" / f"{split}.txt", split_ids)
        for k, image_id in enumerate(split_ids):
            write_image(voc_dir / "JPEGImages" / f"{image_id}.jpg", rgb(k))
            write_mat(root / "trainval" / f"{image_id}.mat", {"LabelMap": raw})
    return root, devkit


def build_label_folder(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(images/ with jpg+png, labels/ with L-mode PNGs, classes.txt with colours)."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    write_image(images / "a.jpg", rgb(0))
    write_image(images / "b.png", rgb(1))
    write_image(images / "c.jpeg", rgb(2))
    for stem in "abc":
        write_image(labels / f"{stem}.png", tiled([0, 1, 2, 255]))
    classes = write_lines(
        tmp_path / "classes.txt",
        ["# name R G B", "background 0 0 0", "road 128 64 128", "traffic sign 220 220 0"],
    )
    return images, labels, classes
