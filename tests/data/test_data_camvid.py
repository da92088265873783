from pathlib import Path

import numpy as np
import pytest
import torch
from datafixtures import CAMVID_RAW, H, W, rgb, tiled, truncate, write_image

from fcnseg.data import CamVid, DatasetError
from fcnseg.data.camvid import CAMVID_CLASSES, CAMVID_PALETTE

REAL_CAMVID = Path(__file__).parents[2].parent / "shared" / "data" / "camvid"


def test_reads_pairs_with_void_ignored(camvid_root: Path) -> None:
    data = CamVid(camvid_root, "train")
    assert len(data) == 3 and len(CamVid(camvid_root, "val")) == 2
    assert data.num_classes == 11 and data.classes == CAMVID_CLASSES
    assert data.palette == CAMVID_PALETTE and data.split == "train" and data.root == camvid_root
    assert [image.name for image, _ in data.files] == [
        "0001TP_a.png",
        "0001TP_b.png",
        "Seq05_c.png",
    ]
    image, label = data[0]
    assert image.dtype == torch.float32 and image.shape == (3, H, W)
    assert torch.equal(image, torch.from_numpy(rgb(0)).permute(2, 0, 1).float())  # RGB order
    assert label.dtype == torch.int64 and label.shape == (H, W)
    expected = tiled(CAMVID_RAW).astype(np.int64)
    expected[expected == 11] = 255
    assert torch.equal(label, torch.from_numpy(expected))


def test_custom_ignore_index_and_transform(camvid_root: Path) -> None:
    def flip(image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return image.flip(-1), label.flip(-1)

    plain = CamVid(camvid_root, ignore_index=-1)
    image, label = plain[1]
    assert set(label.unique().tolist()) == {-1, 0, 3, 10}
    flipped_image, flipped_label = CamVid(camvid_root, ignore_index=-1, transform=flip)[1]
    assert torch.equal(flipped_image, image.flip(-1)) and torch.equal(flipped_label, label.flip(-1))


def test_bad_arguments(camvid_root: Path) -> None:
    with pytest.raises(DatasetError, match="valid splits: train, val, test, trainval"):
        CamVid(camvid_root, "trainval2")
    with pytest.raises(ValueError, match="ignore_index=3 collides"):
        CamVid(camvid_root, ignore_index=3)


def test_missing_folders(tmp_path: Path, camvid_root: Path) -> None:
    with pytest.raises(DatasetError, match="CamVid root folder not found: .*nowhere"):
        CamVid(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"CamVid test image folder not found: .*camvid/test"):
        CamVid(camvid_root, "test")
    (camvid_root / "test").mkdir()
    with pytest.raises(DatasetError, match=r"label folder not found: .*testannot"):
        CamVid(camvid_root, "test")
    (camvid_root / "testannot").mkdir()
    with pytest.raises(DatasetError, match=r"no image files .* in .*camvid/test"):
        CamVid(camvid_root, "test")


def test_unmatched_files_are_named(camvid_root: Path) -> None:
    write_image(camvid_root / "train" / "lonely.png", rgb(9))
    with pytest.raises(DatasetError, match=r"1 image\(s\) .* have no label .*: lonely.png"):
        CamVid(camvid_root)
    (camvid_root / "train" / "lonely.png").unlink()
    write_image(camvid_root / "trainannot" / "orphan.png", tiled([0]))
    with pytest.raises(DatasetError, match=r"label\(s\) .* have no image .*: orphan.png"):
        CamVid(camvid_root)


def test_size_mismatch_names_both_files(camvid_root: Path) -> None:
    write_image(camvid_root / "trainannot" / "0001TP_b.png", tiled([0], shape=(H, W + 1)))
    data = CamVid(camvid_root)
    data[0]  # the other pairs still load
    with pytest.raises(
        DatasetError, match=rf"0001TP_b.png is {H}x{W}, .*0001TP_b.png is {H}x{W + 1}"
    ):
        data[1]


def test_out_of_range_values(camvid_root: Path) -> None:
    write_image(camvid_root / "trainannot" / "Seq05_c.png", tiled([0, 12, 200]))
    with pytest.raises(
        DatasetError, match=r"Seq05_c.png has values 12, 200 .*\(0..10\) or void \(11\)"
    ):
        CamVid(camvid_root)[2]


def test_unreadable_files(camvid_root: Path) -> None:
    truncate(camvid_root / "train" / "0001TP_a.png")
    (camvid_root / "trainannot" / "0001TP_b.png").write_bytes(b"not a png")
    data = CamVid(camvid_root)
    with pytest.raises(DatasetError, match=r"cannot read image .*train/0001TP_a.png"):
        data[0]
    with pytest.raises(DatasetError, match=r"cannot read image .*trainannot/0001TP_b.png"):
        data[1]


def test_colour_label_is_refused(camvid_root: Path) -> None:
    write_image(camvid_root / "trainannot" / "0001TP_a.png", rgb(3))
    with pytest.raises(DatasetError, match=r"0001TP_a.png has mode RGB; expected a single-channel"):
        CamVid(camvid_root)[0]


def test_real_camvid_frames() -> None:
    if not (REAL_CAMVID / "train").is_dir():
        pytest.skip(f"the research-only CamVid copy is not at {REAL_CAMVID}")
    train, val = CamVid(REAL_CAMVID, "train"), CamVid(REAL_CAMVID, "val")
    assert (len(train), len(val)) == (367, 101)
    for data in (train, val):
        image, label = data[0]
        assert image.shape == (3, 360, 480) and label.shape == (360, 480)
        assert 0 <= image.min() and image.max() <= 255
        values = set(label.unique().tolist())
        assert values <= set(range(11)) | {255} and len(values - {255}) > 3


def test_trainval_and_sequences(camvid_root: Path) -> None:
    """trainval is train then val; whole sequences are kept or held out by name."""
    train, val = CamVid(camvid_root, "train"), CamVid(camvid_root, "val")
    assert CamVid(camvid_root, "trainval").files == train.files + val.files
    kept = CamVid(camvid_root, "train", sequences="0001TP")
    assert [image.name for image, _ in kept.files] == ["0001TP_a.png", "0001TP_b.png"]
    dropped = CamVid(camvid_root, "train", exclude_sequences=["0001TP"])
    assert [image.name for image, _ in dropped.files] == ["Seq05_c.png"]
    both = CamVid(camvid_root, "train", sequences="0001TP, Seq05", exclude_sequences="Seq05")
    assert both.files == kept.files
    with pytest.raises(
        DatasetError, match="holds no sequence 0006R0; its sequences: 0001TP, Seq05"
    ):
        CamVid(camvid_root, "train", sequences="0006R0")
    with pytest.raises(DatasetError, match="no frames left"):
        CamVid(camvid_root, "train", exclude_sequences="0001TP,Seq05")
