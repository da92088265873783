"""The two-headed SIFT Flow net through the ordinary trainer: the summed loss of both heads,
per-head validation, best.pt by the recipe's best_metric, exact resume, and the errors that
name what a mismatched recipe needs. Runs on the SIFT Flow fixture (real layout, .mat labels)
at VGG16 x 1/16."""

from __future__ import annotations

import json
import math
from pathlib import Path

import datafixtures
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.checkpoint import read
from fcnseg.data import SIFTFlow
from fcnseg.data.common import DatasetError
from fcnseg.evaluate.metrics import ConfusionMatrix, format_heads_report, labelled_mean_iu
from fcnseg.train import train
from fcnseg.train.recipe import Recipe, RecipeError
from fcnseg.train.trainer import validate
from helpers import kill_resume_and_compare

SIFT_MEAN = [114.578, 115.294, 108.353]


def two_headed(root: Path, out: Path, **changes) -> Recipe:
    values = {
        "dataset": "siftflow",
        "root": str(root),
        "options": {"target": "both"},
        "train_split": "trainval",
        "val_split": "test",
        "net": "fcn16s_two_headed",
        "width": 1 / 16,
        "batch_norm": False,
        "dropout": 0.0,
        "preprocessing": "caffe",
        "mean": SIFT_MEAN,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "batch_size": 1,
        "iterations": 4,
        "log_every": 1,
        "out": str(out),
        "device": "cpu",
    }
    return Recipe(**{**values, **changes})


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_the_loss_is_both_heads_summed_and_falls(siftflow_root, tmp_path):
    out = tmp_path / "run"
    result = train(two_headed(siftflow_root, out, iterations=24, val_every=12))
    losses = [r["loss"] for r in _log(out) if "loss" in r]
    # zero score layers: every pixel's scores are uniform, so each head's mean cross-entropy
    # is log K and the first loss is log 33 + log 3
    assert losses[0] == pytest.approx(math.log(33) + math.log(3), rel=1e-5)
    assert sum(losses[-4:]) / 4 < 0.7 * losses[0]
    val = [r for r in _log(out) if r.get("split") == "val"]
    assert [r["iteration"] for r in val] == [12, 24]
    for record in val:
        for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
            assert 0 <= record[key] <= 1 and 0 <= record[f"geometric_{key}"] <= 1
        assert len(record["iu"]) == 33 and len(record["geometric_iu"]) == 3
    assert result.best_mean_iu == max(r["mean_iu"] for r in val)  # semantic mean IU picks best
    assert result.geometric_classes == ["sky", "horizontal", "vertical"]
    best = read(out / "best.pt")
    assert best["meta"]["geometric_classes"] == ["sky", "horizontal", "vertical"]
    assert best["arch"] == "fcn16s_two_headed" and best["settings"]["num_geometric"] == 3


def test_best_metric_can_pick_the_geometric_head(siftflow_root, tmp_path):
    out = tmp_path / "run"
    result = train(
        two_headed(siftflow_root, out, iterations=6, val_every=1, best_metric="geometric_fw_iu")
    )
    val = [r for r in _log(out) if r.get("split") == "val"]
    scores = [r["geometric_fw_iu"] for r in val]
    first_best = scores.index(max(scores))
    assert result.best_mean_iu == max(scores)
    assert result.best_iteration == val[first_best]["iteration"]
    assert read(out / "best.pt")["training"]["iteration"] == result.best_iteration


def test_a_killed_and_resumed_two_headed_run_equals_an_uninterrupted_one(siftflow_root, tmp_path):
    # random scale, crop and flip, dropout, AdamW, a one-cycle schedule, a log window open
    recipe = two_headed(
        siftflow_root,
        tmp_path / "whole",
        iterations=7,
        dropout=0.3,
        flip=True,
        crop_size=[14, 18],
        scale_range=[0.75, 1.25],
        schedule="onecycle",
        val_every=3,
        log_every=2,
    )
    whole, _ = kill_resume_and_compare(recipe, tmp_path, kill_after=5, saved_at=3)
    assert whole.iteration == 7


def test_mismatched_heads_and_labels_name_what_is_needed(siftflow_root, tmp_path):
    with pytest.raises(DatasetError, match=r"trains on 2 label maps \(semantic, geometric\)"):
        train(two_headed(siftflow_root, tmp_path / "a", options={"target": "semantic"}))
    with pytest.raises(DatasetError, match="gives 2 label map"):
        train(two_headed(siftflow_root, tmp_path / "b", net="fcn16s"))
    with pytest.raises(RecipeError, match="best_metric 'geometric_pixel_acc' needs a geometric"):
        train(
            two_headed(
                siftflow_root,
                tmp_path / "c",
                net="fcn16s",
                options={"target": "semantic"},
                best_metric="geometric_pixel_acc",
            )
        )
    with pytest.raises(RecipeError, match="class_weights 'median_frequency' is for one-output"):
        train(two_headed(siftflow_root, tmp_path / "d", class_weights="median_frequency"))
    with pytest.raises(RecipeError, match="lovasz_weight is for one-output nets"):
        train(two_headed(siftflow_root, tmp_path / "e", lovasz_weight=0.5))
    with pytest.raises(RecipeError, match="jaccard_weight is for one-output nets"):
        train(two_headed(siftflow_root, tmp_path / "e", jaccard_weight=0.5))
    with pytest.raises(RecipeError, match="ohem_fraction is for one-output nets"):
        train(two_headed(siftflow_root, tmp_path / "e", ohem_fraction=0.25))
    with pytest.raises(RecipeError, match="paste_classes is for one-output nets"):
        train(two_headed(siftflow_root, tmp_path / "e", paste_classes=["sky"]))
    for option in ("test_flip", "test_crf"):
        with pytest.raises(
            RecipeError, match="test_flip, test_scales and test_crf are for one-output nets"
        ):
            train(two_headed(siftflow_root, tmp_path / "f", **{option: True}))


class ConstantHeads(nn.Module):
    """Predicts semantic class ``semantic`` and geometric class ``geometric`` everywhere."""

    def __init__(self, semantic: int, geometric: int) -> None:
        super().__init__()
        self.num_classes = {"semantic": 33, "geometric": 3}
        self.semantic, self.geometric = semantic, geometric
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the net a device

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        n, _, h, w = x.shape
        return {
            "semantic": F.one_hot(torch.full((n, h, w), self.semantic), 33).permute(0, 3, 1, 2),
            "geometric": F.one_hot(torch.full((n, h, w), self.geometric), 3).permute(0, 3, 1, 2),
        }


def _unchanged(image: torch.Tensor, label: torch.Tensor | None) -> tuple:
    return image, label


def test_validation_scores_each_head_against_its_own_labels(siftflow_root):
    data = SIFTFlow(siftflow_root, "test", target="both")
    metrics = validate(ConstantHeads(semantic=4, geometric=2), data, _unchanged)
    # fixture labels tile raw semantic [0, 1, 33, 5] (0 void; k -> k-1) and geometric
    # [-1, 1, 3, 0] (-1 and 0 void) over 16 x 20 pixels: 80 pixels of each value
    semantic = datafixtures.tiled(datafixtures.SIFT_SEMANTIC_RAW)
    labelled, hits = int((semantic > 0).sum()), int((semantic == 5).sum())
    assert metrics["pixel_acc"] == pytest.approx(hits / labelled) == pytest.approx(1 / 3)
    assert metrics["mean_acc"] == pytest.approx(1 / 3)  # classes 0, 32 at 0; class 4 at 1
    assert metrics["iu"][4] == pytest.approx(1 / 3) and metrics["mean_iu"] == pytest.approx(1 / 9)
    assert metrics["geometric_pixel_acc"] == pytest.approx(0.5)  # vertical of sky + vertical
    sky, horizontal, vertical = metrics["geometric_iu"]
    assert (sky, vertical) == (0.0, pytest.approx(0.5)) and math.isnan(horizontal)
    with pytest.raises(ValueError, match=r"needs one label map per head, \(2, H, W\)"):
        validate(ConstantHeads(4, 2), SIFTFlow(siftflow_root, "test"), _unchanged)


def test_the_table5_row_uses_the_papers_mean_iu_over_labelled_classes():
    semantic = ConfusionMatrix(3, 255)
    # class 0: 3 pixels, 2 right, 1 taken for class 2; class 1: 1 pixel, right; class 2 never
    # labelled (absent from the split) but predicted once
    semantic.update(torch.tensor([0, 0, 2, 1]), torch.tensor([0, 0, 0, 1]))
    geometric = ConfusionMatrix(3, 255)
    geometric.update(torch.tensor([0, 2, 2, 1]), torch.tensor([0, 2, 1, 1]))
    metrics = {"semantic": semantic.compute(), "geometric": geometric.compute()}
    assert metrics["semantic"]["mean_iu"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert labelled_mean_iu(metrics["semantic"]) == pytest.approx((2 / 3 + 1) / 2)
    names = {"semantic": ["a", "b", "c"], "geometric": ["sky", "horizontal", "vertical"]}
    report = format_heads_report(metrics, names)
    assert report.splitlines()[0] == (
        "pixel acc. 75.0  mean acc. 83.3  mean IU 83.3  f.w. IU 75.0  geom. acc. 75.0"
    )
    assert "over the 2 semantic classes labelled here" in report.splitlines()[1]
    assert "over every class labelled or predicted: 55.6" in report.splitlines()[1]
    assert "geometric (3 classes)" in report and "vertical" in report
