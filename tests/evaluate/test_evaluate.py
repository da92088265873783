"""evaluate: metrics equal a hand-accumulated confusion matrix; JSON and figure outputs.

The tiny checkpoint and LabelFolder dataset come from helpers.py (shared with test_predict.py
and test_cli.py).
"""

from __future__ import annotations

import logging
import math

import pytest
import torch
from PIL import Image
from torch import Tensor, nn

import fcnseg
from fcnseg.data import LabelFolder, open_dataset
from fcnseg.data.transforms import CaffeMeanSubtract
from fcnseg.evaluate.metrics import ConfusionMatrix
from fcnseg.evaluate.scoring import (
    check_compatible,
    confusion_matrix_figure,
    evaluate,
    metrics_json,
)
from fcnseg.inference.predict import normalizer_for
from helpers import FOLDER_CLASSES as CLASSES
from helpers import NORMALIZE, write_checkpoint, write_folder_dataset


def hand_matrix(model: nn.Module, dataset: LabelFolder, count: int | None = None) -> Tensor:
    """The confusion counts of the model's argmax, image by image, without fcnseg.evaluate."""
    matrix = ConfusionMatrix(dataset.num_classes, dataset.ignore_index)
    model.eval()
    with torch.no_grad():
        for index in range(count or len(dataset)):
            image, label = dataset[index]
            scores = model(NORMALIZE(image, label)[0][None])  # (1, K, H, W)
            matrix.update(scores.argmax(1)[0], label)
    return matrix.matrix


@pytest.fixture
def setup(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "tiny.pt")
    root = write_folder_dataset(tmp_path / "data")
    return fcnseg.load(checkpoint), open_dataset("folder", root, "val")


def test_metrics_equal_hand_computed_confusion_matrix(setup):
    model, dataset = setup
    matrix = evaluate(model, dataset)
    expected = ConfusionMatrix(3, 255)
    expected.matrix = hand_matrix(model, dataset)
    assert torch.equal(matrix.matrix, expected.matrix)
    assert matrix.matrix.diag().sum() < matrix.matrix.sum()  # not trivially all right
    metrics, hand = matrix.compute(), expected.compute()
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu", "acc", "iu"):
        assert metrics[key] == pytest.approx(hand[key], nan_ok=True)
    labelled = sum(int((dataset[i][1] != 255).sum()) for i in range(len(dataset)))
    assert int(matrix.matrix.sum()) == labelled  # ignore pixels are not counted


def test_limit_scores_the_first_images_and_mode_is_restored(setup):
    model, dataset = setup
    model.train()
    calls = []
    matrix = evaluate(model, dataset, limit=2, progress=lambda total: _Bar(total, calls))
    assert model.training
    assert torch.equal(matrix.matrix, hand_matrix(model, dataset, 2))
    assert calls == [("total", 2), 1, 1, "closed"]


class _Bar:
    def __init__(self, total, calls):
        self.calls = calls
        calls.append(("total", total))

    def update(self, n):
        self.calls.append(n)

    def close(self):
        self.calls.append("closed")


def test_class_count_mismatch_names_both(setup, tmp_path):
    _, dataset = setup
    model = fcnseg.load(write_checkpoint(tmp_path / "five.pt", num_classes=2))
    with pytest.raises(ValueError, match=r"five\.pt predicts 2 classes .* has 3"):
        check_compatible(model, dataset, source=str(tmp_path / "five.pt"))
    with pytest.raises(ValueError, match="predicts 2 classes"):
        evaluate(model, dataset)


def test_differing_class_names_are_warned(setup, tmp_path, caplog):
    _, dataset = setup
    model = fcnseg.load(write_checkpoint(tmp_path / "cv.pt", classes=["sky", "road", "car"]))
    with caplog.at_level(logging.WARNING, logger="fcnseg.evaluate.scoring"):
        check_compatible(model, dataset, source="cv.pt")
    assert "cv.pt's class names differ" in caplog.text


def test_multi_target_labels_are_refused(setup):
    model, _ = setup

    class TwoTargets:
        num_classes, ignore_index, classes = 3, 255, CLASSES

        def __len__(self):
            return 1

        def __getitem__(self, index):
            return torch.zeros(3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long)

    with pytest.raises(ValueError, match=r"\(H, W\) labels"):
        evaluate(model, TwoTargets())


def test_missing_preprocessing_falls_back_to_caffe_with_a_warning(tmp_path, caplog):
    model = fcnseg.load(write_checkpoint(tmp_path / "old.pt", preprocessing=None))
    assert fcnseg.metadata_of(model).preprocessing is None
    with caplog.at_level(logging.WARNING, logger="fcnseg.inference.predict"):
        normalizer = normalizer_for(model, source="old.pt")
    assert isinstance(normalizer, CaffeMeanSubtract)
    assert "old.pt records no preprocessing" in caplog.text and "Caffe" in caplog.text


def test_metrics_json_by_class_name_with_nan_as_none():
    matrix = ConfusionMatrix(3, 255)
    matrix.update(torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 255]))  # class 2: unseen
    metrics = matrix.compute()
    payload = metrics_json(metrics, CLASSES, {"dataset": "folder"})
    assert list(payload)[:2] == ["dataset", "pixel_acc"]
    assert payload["pixel_acc"] == pytest.approx(2 / 3)
    assert payload["per_class"]["road"] == {"acc": 1.0, "iu": 0.5}
    assert payload["per_class"]["sky"] == {"acc": None, "iu": None}
    assert math.isnan(metrics["iu"][2])
    with pytest.raises(ValueError, match="overwrite"):
        metrics_json(metrics, CLASSES, {"mean_iu": 1})
    with pytest.raises(ValueError, match="2 class names for 3"):
        metrics_json(metrics, CLASSES[:2])


def test_confusion_matrix_figure_is_a_png(tmp_path):
    matrix = ConfusionMatrix(3, 255)
    matrix.update(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 0, 0]))  # class 2 unlabelled
    path = confusion_matrix_figure(matrix, CLASSES, tmp_path / "sub" / "cm.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100
    with pytest.raises(ValueError, match="2 class names"):
        confusion_matrix_figure(matrix, CLASSES[:2], tmp_path / "x.png")
