from pathlib import Path

import numpy as np
import pytest
import torch
from datafixtures import NYUD_RAW, H, W, rgb, tiled, write_image, write_lines, write_mat

from fcnseg.data import DatasetError, NYUDv2, voc_palette
from fcnseg.data.nyud import NYUD_CLASSES

DEPTH_MM = tiled([500, 1000, 2500, 9999], np.uint16)


def expected_label() -> torch.Tensor:
    raw = tiled(NYUD_RAW).astype(np.int64)
    return torch.from_numpy(np.where(raw == 0, 255, raw - 1))


@pytest.mark.parametrize(
    ("modality", "channels"), [("rgb", 3), ("depth", 1), ("hha", 3), ("rgbd", 4), ("rgbhha", 6)]
)
def test_modalities(nyud_root: Path, modality: str, channels: int) -> None:
    data = NYUDv2(nyud_root, "train", modality=modality)
    assert len(data) == 2 and data.in_channels == channels
    assert data.num_classes == 40 and data.classes == NYUD_CLASSES
    assert data.classes[19] == "floor mat" and data.palette == voc_palette(40)
    image, label = data[0]
    assert image.dtype == torch.float32 and image.shape == (channels, H, W)
    assert label.dtype == torch.int64 and torch.equal(label, expected_label())
    colour = torch.from_numpy(rgb(0)).permute(2, 0, 1).float()
    depth = torch.from_numpy(DEPTH_MM.astype(np.float32))[None]
    hha = torch.from_numpy(rgb(100)).permute(2, 0, 1).float()
    expected = {
        "rgb": colour,
        "depth": depth,
        "hha": hha,
        "rgbd": torch.cat([colour, depth]),
        "rgbhha": torch.cat([colour, hha]),
    }[modality]
    assert torch.equal(image, expected)


def test_splits(nyud_root: Path) -> None:
    trainval = NYUDv2(nyud_root, "trainval")
    assert trainval.ids == ["5003", "5004", "5010"]  # train.txt then val.txt
    assert len(NYUDv2(nyud_root, "test")) == 2
    write_lines(nyud_root / "trainval.txt", ["5010"])
    assert NYUDv2(nyud_root, "trainval").ids == ["5010"]  # a trainval.txt wins
    assert NYUDv2(nyud_root, "val").files[0] == (
        nyud_root / "data" / "images" / "img_5010.png",
        nyud_root / "segmentation" / "img_5010.mat",
    )


def test_transform_sees_all_channels(nyud_root: Path) -> None:
    seen = []
    data = NYUDv2(nyud_root, "val", "rgbd", transform=lambda x, y: seen.append(x.shape) or (x, y))
    data[0]
    assert seen == [(4, H, W)]


def test_errors(nyud_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown modality 'rgbx'; valid: rgb, .*, rgbd, rgbhha"):
        NYUDv2(nyud_root, modality="rgbx")
    with pytest.raises(DatasetError, match=r"NYUDv2 root folder not found: .*absent"):
        NYUDv2(tmp_path / "absent")
    (nyud_root / "data" / "hha" / "img_5004.png").unlink()
    NYUDv2(nyud_root, "train", "rgbd")  # hha is not needed here
    with pytest.raises(DatasetError, match=r"NYUDv2 hha file\(s\) missing: .*img_5004.png"):
        NYUDv2(nyud_root, "train", "hha")
    write_mat(nyud_root / "segmentation" / "img_5003.mat", {"segmentation": tiled([0, 41, 40])})
    with pytest.raises(DatasetError, match=r"img_5003.mat has values 41 .*\(1..40\) or void \(0\)"):
        NYUDv2(nyud_root, "train")[0]
    write_mat(nyud_root / "segmentation" / "img_5003.mat", {"labels": tiled([0])})
    with pytest.raises(DatasetError, match=r"img_5003.mat has no variable 'segmentation'"):
        NYUDv2(nyud_root, "train")[0]
    write_image(nyud_root / "data" / "depth" / "img_5010.png", tiled([1], np.uint16, (H, W - 1)))
    with pytest.raises(DatasetError, match=rf"depth/img_5010.png is {H}x{W - 1}"):
        NYUDv2(nyud_root, "val", "rgbd")[0]
    write_image(nyud_root / "data" / "depth" / "img_5010.png", rgb(0))
    with pytest.raises(DatasetError, match=r"depth image .*img_5010.png has shape \(16, 20, 3\)"):
        NYUDv2(nyud_root, "val", "depth")[0]
