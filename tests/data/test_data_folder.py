from pathlib import Path

import numpy as np
import pytest
import torch
from datafixtures import H, W, rgb, tiled, write_image, write_lines, write_palette_png

from fcnseg.data import DatasetError, LabelFolder, voc_palette
from fcnseg.data.folder import read_classes_file


def test_pairs_by_stem_with_classes_and_colours(label_folder: tuple[Path, Path, Path]) -> None:
    images, labels, classes = label_folder
    data = LabelFolder(images, labels, classes)
    assert [image.name for image, _ in data.files] == ["a.jpg", "b.png", "c.jpeg"]
    assert data.classes == ["background", "road", "traffic sign"] and data.num_classes == 3
    assert data.palette == [(0, 0, 0), (128, 64, 128), (220, 220, 0)]
    assert data.root == images and data.split == "images"
    image, label = data[1]
    assert image.shape == (3, H, W) and image.dtype == torch.float32
    assert torch.equal(image, torch.from_numpy(rgb(1)).permute(2, 0, 1).float())
    assert torch.equal(label, torch.from_numpy(tiled([0, 1, 2, 255], np.int64)))


def test_palette_png_labels_and_custom_ignore(label_folder: tuple[Path, Path, Path]) -> None:
    images, labels, classes = label_folder
    write_palette_png(labels / "a.png", tiled([2, 0, 9]))
    data = LabelFolder(images, labels, classes, ignore_index=9, transform=lambda x, y: (x, y * 2))
    assert torch.equal(data[0][1], torch.from_numpy(tiled([4, 0, 18], np.int64)))
    with pytest.raises(DatasetError, match=r"b.png has values 255 .*\(0..2\) or void \(9\)"):
        data[1]


def test_classes_file_formats(tmp_path: Path) -> None:
    plain = write_lines(tmp_path / "plain.txt", ["sky", "", "floor mat", "# comment"])
    assert read_classes_file(plain) == (["sky", "floor mat"], None)
    images, labels = tmp_path / "i", tmp_path / "l"
    write_image(images / "x.png", rgb(0))
    write_image(labels / "x.png", tiled([0, 1]))
    assert LabelFolder(images, labels, plain).palette == voc_palette(2)
    mixed = write_lines(tmp_path / "mixed.txt", ["sky 1 2 3", "road"])
    with pytest.raises(
        DatasetError, match=r"mixed.txt gives colours for some .* not for \['road'\]"
    ):
        read_classes_file(mixed)
    twice = write_lines(tmp_path / "twice.txt", ["sky", "road", "sky"])
    with pytest.raises(DatasetError, match=r"twice.txt repeats class names: \['sky'\]"):
        read_classes_file(twice)
    empty = write_lines(tmp_path / "empty.txt", ["# nothing"])
    with pytest.raises(DatasetError, match="empty.txt lists no classes"):
        read_classes_file(empty)
    with pytest.raises(DatasetError, match=r"classes file not found: .*nope.txt"):
        LabelFolder(images, labels, tmp_path / "nope.txt")


def test_structural_errors(label_folder: tuple[Path, Path, Path], tmp_path: Path) -> None:
    images, labels, classes = label_folder
    with pytest.raises(DatasetError, match=r"label folder not found: .*missing"):
        LabelFolder(images, tmp_path / "missing", classes)
    write_image(images / "a.png", rgb(5))
    with pytest.raises(DatasetError, match=r"two image files share a stem: .*a.jpg, .*a.png"):
        LabelFolder(images, labels, classes)
    (images / "a.png").unlink()
    for stem in "defghij":
        write_image(labels / f"{stem}.png", tiled([0]))
    with pytest.raises(DatasetError, match=r"7 label\(s\) .*: d.png, e.png, f.png, g.png, h.png "):
        LabelFolder(images, labels, classes)


def test_content_errors(label_folder: tuple[Path, Path, Path]) -> None:
    images, labels, classes = label_folder
    write_image(labels / "a.png", tiled([0, 3, 7]))
    write_image(labels / "b.png", tiled([0], shape=(H - 1, W)))
    (images / "c.jpeg").write_bytes((images / "c.jpeg").read_bytes()[:200])
    data = LabelFolder(images, labels, classes)
    with pytest.raises(DatasetError, match=r"a.png has values 3, 7 .*\(0..2\) or void \(255\)"):
        data[0]
    with pytest.raises(DatasetError, match=rf"b.png is {H}x{W}, .*b.png is {H - 1}x{W}"):
        data[1]
    with pytest.raises(DatasetError, match=r"cannot read image .*c.jpeg"):
        data[2]
    with pytest.raises(IndexError, match="index 3 out of range for 3 samples"):
        data[3]
