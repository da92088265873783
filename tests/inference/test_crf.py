"""The CRF after the net (fcnseg.inference.crf): mean-field inference against the formula
written out pixel by pixel, what it does to a label map, and its place in scoring: recorded in
checkpoints, applied by evaluate, segment and the command line unless told otherwise."""

from __future__ import annotations

import argparse
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from segment_fixtures import NORMALIZE, random_fcn

import fcnseg
from fcnseg.cli import options
from fcnseg.evaluate.scoring import evaluate
from fcnseg.inference import crf as crf_module
from fcnseg.inference.crf import CRF, CRFError, mean_field, refine
from fcnseg.inference.predict import SegmentError
from fcnseg.inference.tta import (
    NO_AUGMENTATION,
    Augmentation,
    augmentation_of,
    chosen_augmentation,
    class_probabilities,
)
from fcnseg.metadata import Metadata, MetadataError
from fcnseg.train.recipe import Recipe


def by_hand(probabilities, image, crf):
    """Mean-field inference written out pixel by pixel, float64, from the module's formula."""
    n, k, h, w = probabilities.shape
    radius = crf.window // 2
    unary = probabilities.double().clamp_min(1e-8).log()
    image = image.double()
    q = probabilities.double()
    for _ in range(crf.iterations):
        message = torch.zeros_like(q)
        for b, i, j in itertools.product(range(n), range(h), range(w)):
            for y, x in itertools.product(range(i - radius, i + radius + 1),
                                          range(j - radius, j + radius + 1)):  # fmt: skip
                if (y, x) == (i, j) or not (0 <= y < h and 0 <= x < w):
                    continue
                colour = float(((image[b, :, y, x] - image[b, :, i, j]) ** 2).sum())
                position = (y - i) ** 2 + (x - j) ** 2
                kernel = crf.weight * math.exp(
                    -position / (2 * crf.spatial**2) - colour / (2 * crf.colour**2)
                )
                message[b, :, i, j] += kernel * q[b, :, y, x]
        q = torch.softmax(unary + message, dim=1)
    return q


def random_probabilities(n, k, h, w, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, h, w, generator=generator).mul(2).softmax(1)


@pytest.mark.parametrize(
    "crf",
    [
        CRF(window=3, iterations=1),
        CRF(weight=2.5, spatial=1.5, colour=20.0, window=5, iterations=3),
        CRF(),  # the defaults: a window wider than the image
    ],
)
def test_mean_field_is_the_formula(crf):
    probabilities = random_probabilities(2, 3, 6, 7)
    image = torch.rand(2, 3, 6, 7, generator=torch.Generator().manual_seed(1)) * 255
    expected = by_hand(probabilities, image, crf)
    torch.testing.assert_close(mean_field(probabilities, image, crf).double(), expected,
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_kernels_recomputed_when_they_do_not_fit_give_the_same_result(monkeypatch):
    probabilities = random_probabilities(1, 4, 9, 11)
    image = torch.rand(1, 3, 9, 11) * 255
    kept = mean_field(probabilities, image, CRF(window=5))
    monkeypatch.setattr(crf_module, "KERNEL_BYTES", 0)
    torch.testing.assert_close(mean_field(probabilities, image, CRF(window=5)), kept)


def test_weight_zero_changes_nothing_and_rows_sum_to_one():
    probabilities = random_probabilities(1, 5, 8, 8)
    image = torch.rand(1, 3, 8, 8) * 255
    torch.testing.assert_close(mean_field(probabilities, image, CRF(weight=0.0)), probabilities)
    refined = mean_field(probabilities, image, CRF(weight=3.0))
    torch.testing.assert_close(refined.sum(1), torch.ones(1, 8, 8))


def test_a_stray_label_in_a_plain_region_goes_and_an_edge_of_colour_stays():
    # left half dark, right half bright; the net calls the left class 0, the right class 1,
    # but is wrong, mildly, at one dark pixel; the column next to the edge is kept
    image = torch.zeros(1, 3, 9, 10)
    image[..., 5:] = 200.0
    scores = torch.zeros(1, 2, 9, 10)
    scores[:, 0, :, :5], scores[:, 1, :, 5:] = 2.0, 2.0
    scores[:, :, 4, 2] = torch.tensor([0.0, 1.0])  # the stray pixel
    probabilities = scores.softmax(1)
    labels = mean_field(probabilities, image, CRF(weight=1.0, window=5)).argmax(1)[0]
    assert probabilities.argmax(1)[0, 4, 2] == 1 and labels[4, 2] == 0
    expected = torch.zeros(9, 10, dtype=torch.long)
    expected[:, 5:] = 1
    assert torch.equal(labels, expected)


def test_refine_runs_on_the_net_input_grid_and_returns_the_image_size():
    probabilities = random_probabilities(1, 3, 12, 16)
    images = torch.rand(1, 3, 12, 16) * 255
    crf = CRF(window=3, iterations=2)
    on_grid = mean_field(F.avg_pool2d(probabilities, 2), F.avg_pool2d(images, 2), crf)
    expected = F.interpolate(on_grid, size=(12, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(refine(probabilities, images, crf, 0.5), expected)
    torch.testing.assert_close(refine(probabilities, images, crf), mean_field(
        probabilities, images, crf))  # fmt: skip
    with pytest.raises(CRFError, match="same batch and size"):
        refine(probabilities, images[..., :8], crf)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"window": 4}, "window must be odd"),
        ({"window": 1}, "window must be an integer >= 3"),
        ({"iterations": 0}, "iterations must be an integer >= 1"),
        ({"iterations": 2.0}, "iterations must be an integer"),
        ({"weight": -1.0}, "weight must be a finite number >= 0"),
        ({"spatial": 0.0}, "spatial must be a finite number > 0"),
        ({"colour": float("nan")}, "colour must be a finite number > 0"),
        ({"colour": True}, "colour must be a number"),
    ],
)
def test_bad_parameters_are_refused_by_name(values, message):
    with pytest.raises(CRFError, match=message):
        CRF(**values)


def test_parameters_round_trip_and_unknown_ones_are_named():
    crf = CRF(weight=2.0, spatial=3.0, colour=7.0, window=7, iterations=4)
    assert CRF.from_dict(crf.to_dict()) == crf
    assert str(crf) == "crf (weight 2, spatial 3, colour 7, window 7, 4 iterations)"
    with pytest.raises(CRFError, match="unknown parameter.*theta"):
        CRF.from_dict({"theta": 3})


def test_augmentation_carries_the_crf():
    plain = Augmentation(flip=True, scales=(1.0, 1.5))
    with_crf = Augmentation(flip=True, scales=(1.0, 1.5), crf=CRF())
    assert plain.plain is False and NO_AUGMENTATION.plain and not Augmentation(crf=CRF()).plain
    assert "crf" not in plain.to_dict()  # records without a CRF are as before
    assert Augmentation.from_dict(with_crf.to_dict()) == with_crf
    assert str(Augmentation(crf=CRF(window=3))).startswith("crf (weight 1, spatial 5")
    with pytest.raises(SegmentError, match="crf must be"):
        Augmentation(crf={"window": 3})


def test_metadata_checks_the_recorded_crf():
    spec = {"flip": False, "scales": [1.0], "crf": {"window": 7}}
    recorded = Metadata(test_time_augmentation=spec).test_time_augmentation
    assert recorded["crf"] == CRF(window=7).to_dict()  # filled in with the defaults
    with pytest.raises(MetadataError, match="test_time_augmentation: crf: window must be odd"):
        Metadata(test_time_augmentation={"flip": False, "scales": [1.0], "crf": {"window": 8}})
    with pytest.raises(MetadataError, match="crf must be a dict"):
        Metadata(test_time_augmentation={"flip": False, "scales": [1.0], "crf": 3})


STRONG = CRF(weight=3.0, colour=100.0, window=5, iterations=2)  # moves labels of random nets


def crf_net(crf=STRONG):
    model = random_fcn()
    spec = {"flip": False, "scales": [1.0], "crf": crf.to_dict()}
    model.metadata = fcnseg.metadata_of(model).updated(test_time_augmentation=spec)
    return model


def test_the_recorded_crf_survives_save_and_load_and_is_chosen_by_default(tmp_path):
    loaded = fcnseg.load(fcnseg.save(crf_net(), tmp_path / "net.pt"))
    recorded = augmentation_of(loaded)
    assert recorded.crf == CRF(weight=3.0, colour=100.0, window=5, iterations=2)
    assert recorded.views == 1
    assert chosen_augmentation(loaded).crf == recorded.crf
    assert chosen_augmentation(loaded, crf=False).crf is None
    assert chosen_augmentation(loaded, crf=True).crf == recorded.crf  # the recorded one
    assert chosen_augmentation(random_fcn(), crf=True).crf == CRF()  # else the default
    assert chosen_augmentation(random_fcn(), crf=CRF(window=3)).crf == CRF(window=3)
    with pytest.raises(SegmentError, match="crf must be a CRF"):
        chosen_augmentation(loaded, crf="yes")


def test_class_probabilities_refine_the_views_mean():
    model, image = random_fcn(), torch.rand(1, 3, 37, 50) * 255
    crf = CRF(window=5, iterations=2)
    with torch.no_grad():
        views = Augmentation(flip=True, scales=(1.0, 0.75))
        mean = class_probabilities(model, image, NORMALIZE, 1.0, views)
        refined = class_probabilities(model, image, NORMALIZE, 1.0, Augmentation(
            flip=True, scales=(1.0, 0.75), crf=crf))  # fmt: skip
    torch.testing.assert_close(refined, refine(mean, image, crf))
    assert (refined - mean).abs().max() > 0.01  # it did change the probabilities


def test_segment_and_evaluate_apply_the_recorded_crf_unless_told_not_to():
    model, plain = crf_net(), random_fcn()  # the same weights; only the first records a CRF
    image = torch.rand(3, 37, 50) * 255
    crf = augmentation_of(model).crf
    labels, probabilities = fcnseg.segment(model, image, probabilities=True)
    with torch.no_grad():
        expected = refine(class_probabilities(plain, image[None], NORMALIZE), image[None], crf)
    torch.testing.assert_close(probabilities, expected[0])
    assert torch.equal(labels.long(), expected[0].argmax(0))
    untouched = fcnseg.segment(model, image, crf=False)
    assert torch.equal(untouched, fcnseg.segment(plain, image))
    assert torch.equal(fcnseg.segment(plain, image, crf=crf), labels)

    frames = [(torch.rand(3, 30, 40) * 255, torch.randint(0, 4, (30, 40))) for _ in range(2)]

    class Frames:
        num_classes, ignore_index = 4, 255

        def __len__(self):
            return len(frames)

        def __getitem__(self, index):
            return frames[index]

    recorded = evaluate(model, Frames(), preprocess=NORMALIZE).matrix
    by_augmentation = evaluate(
        plain, Frames(), preprocess=NORMALIZE, augmentation=Augmentation(crf=crf)
    ).matrix
    assert torch.equal(recorded, by_augmentation)
    one_view = evaluate(model, Frames(), preprocess=NORMALIZE, augmentation=NO_AUGMENTATION)
    assert torch.equal(one_view.matrix, evaluate(plain, Frames(), preprocess=NORMALIZE).matrix)
    assert not torch.equal(recorded, one_view.matrix)  # the CRF moved some labels
    assert not torch.equal(untouched, labels)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], "recorded"),
        (["--no-crf"], None),
        (["--tta", "none"], None),  # one view: no CRF either
        (["--tta", "none", "--crf"], "recorded"),
        (["--crf"], "recorded"),
    ],
)
def test_command_line_flags(flags, expected):
    parser = argparse.ArgumentParser()
    options.add_tta_options(parser)
    model = crf_net()
    chosen = options.augmentation_from(parser.parse_args(flags), model)
    assert chosen.crf == (augmentation_of(model).crf if expected == "recorded" else None)
    on_plain = options.augmentation_from(parser.parse_args(["--crf"]), random_fcn())
    assert on_plain.crf == CRF()


def test_recipe_records_the_default_crf():
    assert Recipe(out="x", iterations=1).test_time_augmentation() is None
    spec = Recipe(out="x", iterations=1, test_crf=True).test_time_augmentation()
    assert spec == {"flip": False, "scales": [1.0], "crf": CRF().to_dict()}
    assert Metadata(test_time_augmentation=spec).test_time_augmentation == spec


def test_an_ensemble_file_keeps_its_first_members_crf(tmp_path):
    from fcnseg.checkpoint import ensemble

    paths = [fcnseg.save(crf_net(), tmp_path / f"{name}.pt") for name in ("a", "b")]
    path = fcnseg.save(ensemble(paths), tmp_path / "pair.pt")
    assert augmentation_of(fcnseg.load(path)).crf == STRONG
