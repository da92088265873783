"""Legends list exactly the classes present, with their colours; overlays and figures carry them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_fixtures import CLASSES, PALETTE

from fcnseg.inference.visualize import (
    legend_entries,
    legend_panel,
    overlay,
    show_figure,
    with_legend,
)


def test_legend_entries_are_the_classes_present_in_class_order():
    prediction = torch.tensor([[3, 3, 1], [1, 255, 3]])
    assert legend_entries(prediction, CLASSES, PALETTE) == [
        (1, "road", (128, 64, 128)),
        (3, "tree", (107, 142, 35)),
    ]
    truth = torch.tensor([[0, 0, 255], [1, 1, 1]])
    names = [name for _, name, _ in legend_entries([prediction, truth], CLASSES, PALETTE)]
    assert names == ["sky", "road", "tree"]
    assert legend_entries(torch.full((2, 2), 255), CLASSES, PALETTE) == []
    with pytest.raises(ValueError, match=r"label values \[4, 9\] are not classes \(0..3\)"):
        legend_entries(torch.tensor([[4, 9, 0]]), CLASSES, PALETTE)


def test_overlay_with_legend_keeps_the_overlay_and_draws_each_swatch():
    image = torch.rand(3, 60, 80) * 255
    label = torch.zeros(60, 80, dtype=torch.long)
    label[:, 40:] = 2
    blended = overlay(image, label, PALETTE, alpha=0.5)
    entries = legend_entries(label, CLASSES, PALETTE)
    sheet = with_legend(blended, entries)
    assert sheet.shape[0] == 60 and sheet.shape[1] > 80
    assert np.array_equal(sheet[:, :80], blended)
    panel = sheet[:, 80:]
    for colour in ((70, 130, 180), (0, 0, 142)):  # sky and car swatches are drawn ...
        assert (panel == colour).all(-1).sum() >= 100
    assert not (panel == (128, 64, 128)).all(-1).any()  # ... road, absent, is not
    tall = legend_panel(entries * 10, height=60)  # 20 entries in 60 px wrap into columns
    assert tall.shape[0] == 60 and tall.shape[1] > legend_panel(entries, 60).shape[1]


def test_show_figure_has_headers_and_a_legend_of_exactly_the_classes_present(tmp_path):
    image = torch.rand(3, 30, 40) * 255
    prediction = torch.zeros(30, 40, dtype=torch.long)
    prediction[10:, :] = 3
    truth = torch.full((30, 40), 255)
    truth[:, :20] = 1
    figure = show_figure([(image, prediction, truth)], CLASSES, PALETTE, titles=["a.png"])
    assert [axis.get_title() for axis in figure.axes[:3]] == ["image", "prediction", "truth"]
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == ["sky", "road", "tree"]
    colours = [tuple(np.round(np.array(p.get_facecolor()[:3]) * 255)) for p in legend.get_patches()]
    assert colours == [(70, 130, 180), (128, 64, 128), (107, 142, 35)]
    path = tmp_path / "show.png"
    figure.savefig(path, dpi=50)  # it renders
    assert path.stat().st_size > 1000
    without = show_figure([(image, prediction, None)], CLASSES, PALETTE)
    assert [axis.get_title() for axis in without.axes] == ["image", "prediction"]
    assert [t.get_text() for t in without.legends[0].get_texts()] == ["sky", "tree"]
