from pathlib import Path

import numpy as np
import pytest
import torch
from datafixtures import H, W, context_full_ids, tiled, write_lines, write_mat

from fcnseg.data import DatasetError, PascalContext, voc_palette
from fcnseg.data.context import CONTEXT_CLASSES


def test_maps_full_labels_to_59_plus_background(context_roots: tuple[Path, Path]) -> None:
    root, devkit = context_roots
    data = PascalContext(root, devkit, "train")
    assert len(data) == 2 and len(PascalContext(root, devkit / "VOC2010", "val")) == 1
    assert data.num_classes == 60 and data.classes[0] == "background"
    assert data.classes[11] == "diningtable" and data.classes[59] == "wood"
    assert data.palette == voc_palette(60)
    assert data.files[0][0] == devkit / "VOC2010" / "JPEGImages" / "2008_000002.jpg"
    image, label = data[0]
    assert image.shape == (3, H, W) and image.dtype == torch.float32
    # raw: unlabelled, two non-task classes, aeroplane, table (= diningtable), wood
    assert torch.equal(label, torch.from_numpy(tiled([0, 0, 0, 1, 11, 59], np.int64)))
    assert CONTEXT_CLASSES.index("bedcloth") == data.lookup[context_full_ids()["bedclothes"]]


def test_errors(context_roots: tuple[Path, Path], tmp_path: Path) -> None:
    root, devkit = context_roots
    with pytest.raises(DatasetError, match=r"PASCAL-Context VOC root .*VOC2010/JPEGImages"):
        PascalContext(root, tmp_path)
    with pytest.raises(DatasetError, match="unknown split 'trainval'; valid splits: train, val"):
        PascalContext(root, devkit, "trainval")
    (devkit / "VOC2010" / "ImageSets" / "Main" / "val.txt").rename(tmp_path / "val.txt")
    with pytest.raises(DatasetError, match=r"split file not found: .*Main/val.txt"):
        PascalContext(root, devkit, "val")
    (tmp_path / "val.txt").rename(devkit / "VOC2010" / "ImageSets" / "Main" / "val.txt")
    write_mat(root / "trainval" / "2008_000007.mat", {"LabelMap": tiled([0, 5000], np.uint16)})
    with pytest.raises(DatasetError, match=r"2008_000007.mat has values \[5000\] outside"):
        PascalContext(root, devkit, "val")[0]
    (root / "trainval" / "2008_000003.mat").unlink()
    with pytest.raises(DatasetError, match=r"PASCAL-Context label file\(s\) missing: .*000003.mat"):
        PascalContext(root, devkit)
    write_lines(root / "labels.txt", ["1: accordion", "2: aeroplane"])
    with pytest.raises(DatasetError, match=r"labels.txt lacks the class 'bicycle'"):
        PascalContext(root, devkit)
    write_lines(root / "labels.txt", ["1 accordion"])
    with pytest.raises(DatasetError, match=r"labels.txt line 1: expected 'ID: name'"):
        PascalContext(root, devkit)
    (root / "labels.txt").unlink()
    with pytest.raises(DatasetError, match=r"class list not found: .*labels.txt"):
        PascalContext(root, devkit)
