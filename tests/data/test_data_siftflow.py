from pathlib import Path

import numpy as np
import pytest
import torch
from datafixtures import SIFT_GEOMETRIC_RAW, SIFT_SEMANTIC_RAW, H, W, tiled, write_mat

from fcnseg.data import DatasetError, SIFTFlow
from fcnseg.data.siftflow import SIFTFLOW_CLASSES, SUBSET


def shifted(raw: list[int], void: tuple[int, ...]) -> torch.Tensor:
    values = tiled(raw, np.int64)
    return torch.from_numpy(np.where(np.isin(values, void), 255, values - 1))


SEMANTIC = shifted(SIFT_SEMANTIC_RAW, (0,))
GEOMETRIC = shifted(SIFT_GEOMETRIC_RAW, (-1, 0))


def test_semantic(siftflow_root: Path) -> None:
    data = SIFTFlow(siftflow_root)
    assert data.split == "trainval" and len(data) == 3 and len(SIFTFlow(siftflow_root, "test")) == 1
    assert data.num_classes == 33 and data.classes == SIFTFLOW_CLASSES
    assert data.geometric_classes == ["sky", "horizontal", "vertical"]
    assert data.files[0][1].parent.parent.name == "SemanticLabels"
    image, label = data[0]
    assert image.shape == (3, H, W) and image.dtype == torch.float32
    assert label.dtype == torch.int64 and torch.equal(label, SEMANTIC)


def test_geometric_and_both(siftflow_root: Path) -> None:
    geometric = SIFTFlow(siftflow_root, target="geometric")
    assert geometric.num_classes == 3 and geometric.classes == geometric.geometric_classes
    assert torch.equal(geometric[1][1], GEOMETRIC)
    both = SIFTFlow(siftflow_root, "test", target="both", transform=lambda x, y: (x, y * 1))
    assert both.num_classes == 33
    image, label = both[0]
    assert label.shape == (2, H, W) and label.dtype == torch.int64
    assert torch.equal(label[0], SEMANTIC) and torch.equal(label[1], GEOMETRIC)


def test_errors(siftflow_root: Path) -> None:
    with pytest.raises(
        ValueError, match="unknown target 'depth'; valid: semantic, geometric, both"
    ):
        SIFTFlow(siftflow_root, target="depth")
    with pytest.raises(DatasetError, match="valid splits: trainval, test"):
        SIFTFlow(siftflow_root, "train")
    assert SIFTFlow(siftflow_root, target="geometric", ignore_index=5)[0][1].max() == 5
    with pytest.raises(ValueError, match=r"ignore_index=5 collides with a class index \(0..32\)"):
        SIFTFlow(siftflow_root, target="both", ignore_index=5)
    geo = siftflow_root / "GeoLabels" / SUBSET
    (geo / "tall_a1.mat").unlink()
    SIFTFlow(siftflow_root, "test")  # the semantic target does not need it
    with pytest.raises(
        DatasetError, match=r"SIFT Flow geometric label file\(s\) missing: .*tall_a1"
    ):
        SIFTFlow(siftflow_root, "test", target="both")
    write_mat(geo / "forest_for15.mat", {"S": tiled([1, 4, -2], np.int16)})
    with pytest.raises(DatasetError, match=r"forest_for15.mat has values -2, 4 .*\(1..3\)"):
        SIFTFlow(siftflow_root, target="geometric")[1]
    semantic = siftflow_root / "SemanticLabels" / SUBSET
    write_mat(semantic / "coast_arnat59.mat", {"S": tiled([1.5, 2.0], np.float64)})
    with pytest.raises(DatasetError, match=r"coast_arnat59.mat holds non-integer values"):
        SIFTFlow(siftflow_root)[0]
    write_mat(semantic / "street_a232.mat", {"S": tiled([1], shape=(H, W + 4))})
    with pytest.raises(DatasetError, match=rf"street_a232.jpg is {H}x{W}.*mat is {H}x{W + 4}"):
        SIFTFlow(siftflow_root, target="both")[2]
