import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datafixtures import H, W, tiled, truncate, write_image, write_mat

from fcnseg.data.common import (
    DatasetError,
    check_sizes,
    map_labels,
    read_label_png,
    read_mat,
    read_rgb,
)


def test_map_labels_shift_void_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.mat"
    raw = np.array([[0, 1, 2], [3, 0, 1]], dtype=np.uint8)
    label = map_labels(raw, path, num_classes=3, ignore_index=255, void=(0,), shift=1)
    assert label.dtype == torch.int64
    assert label.tolist() == [[255, 0, 1], [2, 255, 0]]
    assert map_labels(raw, path, 4, -1).tolist() == raw.tolist()
    with pytest.raises(DatasetError, match=r"x.mat has values 3 .*classes \(1..2\) or void \(0\)"):
        map_labels(raw, path, 2, 255, (0,), 1)
    many = np.arange(10, 20).reshape(2, 5)
    with pytest.raises(DatasetError, match=r"values 10, 11, 12, 13, 14 \(and 5 more\)"):
        map_labels(many, path, 3, 255)
    with pytest.raises(DatasetError, match="x.mat has dtype <U1; expected integers"):
        map_labels(np.array([["a"]]), path, 3, 255)
    with pytest.raises(DatasetError, match="x.mat holds non-integer values"):
        map_labels(np.array([[np.nan]]), path, 3, 255)


def test_check_sizes_names_every_file() -> None:
    check_sizes({Path("a.jpg"): (2, 3), Path("a.png"): (2, 3)})
    with pytest.raises(DatasetError, match=r"a.jpg is 2x3, a.png is 3x2"):
        check_sizes({Path("a.jpg"): (2, 3), Path("a.png"): (3, 2)})


def test_read_rgb_converts_grey_and_rgba(tmp_path: Path) -> None:
    grey = write_image(tmp_path / "grey.png", tiled([7, 9]))
    assert read_rgb(grey).shape == (3, H, W)
    assert read_rgb(grey)[:, 0, :2].tolist() == [[7, 9], [7, 9], [7, 9]]
    rgba = write_image(tmp_path / "rgba.png", np.full((H, W, 4), 3, np.uint8))
    assert read_rgb(rgba).shape == (3, H, W)
    with pytest.raises(DatasetError, match=r"file not found: .*absent.png"):
        read_rgb(tmp_path / "absent.png")


def test_read_label_png_modes(tmp_path: Path) -> None:
    wide = write_image(tmp_path / "wide.png", tiled([0, 300, 1000], np.uint16))
    assert read_label_png(wide)[0, :3].tolist() == [0, 300, 1000]
    noise = np.random.default_rng(0).integers(0, 9, (64, 64), np.uint8)
    truncated = write_image(tmp_path / "cut.png", noise)
    truncate(truncated)
    with pytest.raises(DatasetError, match=r"cannot read image .*cut.png"):
        read_label_png(truncated)


def test_read_mat_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_mat(tmp_path / "m.mat", {"S": np.zeros((2, 3, 4)), "T": tiled([1])})
    with pytest.raises(DatasetError, match=r"m.mat: S is \(2, 3, 4\), not 2-D"):
        read_mat(path, "S")
    with pytest.raises(DatasetError, match=r"m.mat has no variable 'U' \(found: \['S', 'T'\]\)"):
        read_mat(path, "U")
    with pytest.raises(DatasetError, match=r"m.mat: 'T' has no field 'X'"):
        read_mat(path, "T", "X")
    (tmp_path / "junk.mat").write_bytes(b"hello world")
    with pytest.raises(DatasetError, match=r"cannot read MATLAB file .*junk.mat"):
        read_mat(tmp_path / "junk.mat", "S")
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(ImportError, match=r"m.mat needs scipy .*pip install scipy"):
        read_mat(path, "T")


def test_data_package_api() -> None:
    import fcnseg.data as data

    assert issubclass(data.DatasetError, ValueError)
    for name in ("CamVid", "VOC", "SBD", "NYUDv2", "SIFTFlow", "PascalContext", "LabelFolder"):
        assert issubclass(getattr(data, name), torch.utils.data.Dataset)
    assert callable(data.voc_palette) and callable(data.flat_palette)
