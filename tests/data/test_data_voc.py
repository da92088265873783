from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from datafixtures import VOC_RAW, H, W, tiled, truncate, write_image, write_lines, write_mat

from fcnseg.data import SBD, VOC, DatasetError, voc_palette
from fcnseg.data.voc import VOC_CLASSES


def expected_voc_label() -> torch.Tensor:
    return torch.from_numpy(tiled(VOC_RAW).astype(np.int64))  # 255 stays 255 (the ignore)


def test_voc_reads_palette_indices(voc_devkit: Path) -> None:
    data = VOC(voc_devkit, "train")
    assert data.year == "2012" and len(data) == 2
    assert data.classes == VOC_CLASSES and data.num_classes == 21
    assert data.palette == voc_palette(21)
    assert data.files[0][0] == voc_devkit / "VOC2012" / "JPEGImages" / "2007_000032.jpg"
    image, label = data[0]
    assert image.shape == (3, H, W) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 255
    assert label.dtype == torch.int64 and torch.equal(label, expected_voc_label())
    assert len(VOC(voc_devkit, "trainval")) == 4


def test_voc_root_may_be_the_year_folder(voc_devkit: Path) -> None:
    direct = VOC(voc_devkit / "VOC2011", "val")
    assert direct.year == "2011" and len(direct) == 3
    assert len(VOC(voc_devkit, "val", year="2011")) == 3
    with pytest.raises(DatasetError, match="is VOC2011, but year='2012'"):
        VOC(voc_devkit / "VOC2011", "val", year="2012")
    with pytest.raises(DatasetError, match=r"neither a VOCdevkit folder holding VOC2007"):
        VOC(voc_devkit, "val", year="2007")


def test_voc_ignore_index_and_transform(voc_devkit: Path) -> None:
    data = VOC(voc_devkit, "val", ignore_index=-100, transform=lambda x, y: (x * 0, y + 1))
    image, label = data[1]
    assert image.abs().sum() == 0
    assert set(label.unique().tolist()) == {-99, 1, 2, 21}


def test_seg11valid_is_voc2011_val_minus_sbd_train(voc_devkit: Path, sbd_root: Path) -> None:
    data = VOC(voc_devkit, "seg11valid", sbd_root=sbd_root)
    assert data.year == "2011" and data.ids == ["2007_000033"]
    assert data[0][1].shape == (H, W)
    with pytest.raises(DatasetError, match="needs sbd_root"):
        VOC(voc_devkit, "seg11valid")
    with pytest.raises(DatasetError, match="seg11valid.*got year 2012"):
        VOC(voc_devkit, "seg11valid", year="2012", sbd_root=sbd_root)
    with pytest.raises(DatasetError, match=r"split file not found: .*nowhere/train.txt"):
        VOC(voc_devkit, "seg11valid", sbd_root=sbd_root.parent / "nowhere")
    write_lines(sbd_root / "train.txt", ["2008_000001", "2007_000033", "2011_000003"])
    with pytest.raises(DatasetError, match="seg11valid is empty"):
        VOC(voc_devkit, "seg11valid", sbd_root=sbd_root)


def test_voc_structural_errors(voc_devkit: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"VOC root folder not found: .*missing"):
        VOC(tmp_path / "missing")
    with pytest.raises(DatasetError, match="unknown split 'test'"):
        VOC(voc_devkit, "test")
    sets = voc_devkit / "VOC2012" / "ImageSets" / "Segmentation"
    (sets / "train.txt").unlink()
    with pytest.raises(DatasetError, match=r"split file not found: .*Segmentation/train.txt"):
        VOC(voc_devkit, "train")
    (sets / "val.txt").write_text("\n\n")
    with pytest.raises(DatasetError, match=r"split file .*val.txt lists no images"):
        VOC(voc_devkit, "val")
    write_lines(sets / "trainval.txt", ["2007_000032", "2099_000001", "2099_000002"])
    with pytest.raises(DatasetError, match=r"2 VOC2012 image file\(s\) missing: .*2099_000001.jpg"):
        VOC(voc_devkit, "trainval")
    (voc_devkit / "VOC2011" / "SegmentationClass" / "2011_000003.png").unlink()
    with pytest.raises(DatasetError, match=r"1 VOC2011 label file\(s\) missing: .*2011_000003.png"):
        VOC(voc_devkit, "val", year="2011")


def test_voc_content_errors(voc_devkit: Path) -> None:
    year_dir = voc_devkit / "VOC2012"
    truncate(year_dir / "JPEGImages" / "2007_000032.jpg")
    write_image(year_dir / "SegmentationClass" / "2007_000039.png", tiled([0, 21, 254]))
    data = VOC(voc_devkit, "train")
    with pytest.raises(DatasetError, match=r"cannot read image .*2007_000032.jpg"):
        data[0]
    with pytest.raises(DatasetError, match=r"2007_000039.png has values 21, 254 .*\(0..20\)"):
        data[1]
    write_image(year_dir / "JPEGImages" / "2007_000039.jpg", np.zeros((H + 2, W, 3), np.uint8))
    with pytest.raises(DatasetError, match=rf"2007_000039.jpg is {H + 2}x{W}.*\.png is {H}x{W}"):
        data[1]


def test_sbd_reads_mat_structs(sbd_root: Path) -> None:
    data = SBD(sbd_root, "train")
    assert len(data) == 3 and len(SBD(sbd_root, "val")) == 1
    assert data.classes == VOC_CLASSES and data.palette == voc_palette(21)
    # the fixture loads like a real SBD file: a 1x1 struct read through [0]["Segmentation"][0]
    mat = scipy.io.loadmat(data.files[0][1])
    assert mat["GTcls"].shape == (1, 1)
    np.testing.assert_array_equal(mat["GTcls"][0]["Segmentation"][0], tiled([0, 1, 20, 15]))
    image, label = data[0]
    assert image.shape == (3, H, W) and label.dtype == torch.int64
    assert torch.equal(label, torch.from_numpy(tiled([0, 1, 20, 15]).astype(np.int64)))


def test_sbd_errors(sbd_root: Path) -> None:
    with pytest.raises(DatasetError, match="unknown split 'trainval'"):
        SBD(sbd_root, "trainval")
    write_mat(sbd_root / "cls" / "2008_000001.mat", {"GTinst": {"Segmentation": tiled([0])}})
    write_mat(sbd_root / "cls" / "2008_000002.mat", {"GTcls": {"Boundaries": tiled([0])}})
    truncate(sbd_root / "cls" / "2011_000003.mat")
    write_mat(sbd_root / "cls" / "2008_000010.mat", {"GTcls": {"Segmentation": tiled([0, 33])}})
    train, val = SBD(sbd_root, "train"), SBD(sbd_root, "val")
    with pytest.raises(DatasetError, match=r"2008_000001.mat has no variable 'GTcls'"):
        train[0]
    with pytest.raises(DatasetError, match=r"2008_000002.mat: 'GTcls' has no field 'Segmentation'"):
        train[1]
    with pytest.raises(DatasetError, match=r"cannot read MATLAB file .*2011_000003.mat"):
        train[2]
    with pytest.raises(DatasetError, match=r"2008_000010.mat has values 33"):
        val[0]
    (sbd_root / "img" / "2008_000010.jpg").unlink()
    with pytest.raises(DatasetError, match=r"SBD image file\(s\) missing: .*2008_000010.jpg"):
        SBD(sbd_root, "val")
    with pytest.raises(DatasetError, match=r"SBD dataset folder not found: .*nowhere"):
        SBD(sbd_root.parent / "nowhere")
