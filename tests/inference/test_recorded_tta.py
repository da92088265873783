"""Test-time augmentation a checkpoint records (metadata ``test_time_augmentation``, from the
recipe's ``test_flip`` and ``test_scales``): segment and evaluate apply it unless told not to."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from segment_fixtures import NORMALIZE, random_fcn

import fcnseg
from fcnseg.evaluate.metrics import ConfusionMatrix
from fcnseg.evaluate.scoring import evaluate, score
from fcnseg.inference.predict import SegmentError, predict_image
from fcnseg.inference.tta import (
    NO_AUGMENTATION,
    Augmentation,
    augmentation_of,
    chosen_augmentation,
    class_probabilities,
)
from fcnseg.metadata import Metadata, MetadataError

FIXTURES = Path(__file__).parents[1] / "fixtures"
RECORDED = {"flip": True, "scales": [0.75, 1.0]}


def recorded_net():
    model = random_fcn()
    model.metadata = fcnseg.metadata_of(model).updated(test_time_augmentation=RECORDED)
    return model


def probabilities(model, image, **options):
    return fcnseg.segment(model, image, probabilities=True, **options)[1]


def test_segment_applies_the_recorded_augmentation_unless_told_otherwise():
    model, plain = recorded_net(), random_fcn()  # same weights; only the first records one
    image = torch.rand(3, 37, 50) * 255
    recorded = probabilities(model, image)
    torch.testing.assert_close(recorded, probabilities(plain, image, flip=True, scales=(0.75, 1)))
    assert not torch.allclose(recorded, probabilities(plain, image))  # it did change something
    one_view = probabilities(model, image, flip=False, scales=(1,))
    torch.testing.assert_close(one_view, probabilities(plain, image))
    no_flip = probabilities(model, image, flip=False)  # the recorded scales stay
    torch.testing.assert_close(no_flip, probabilities(plain, image, scales=(0.75, 1)))


def test_the_record_survives_save_and_load(tmp_path):
    path = fcnseg.save(recorded_net(), tmp_path / "net.pt")
    loaded = fcnseg.load(path)
    assert augmentation_of(loaded) == Augmentation(flip=True, scales=(0.75, 1.0))
    assert augmentation_of(random_fcn()) == NO_AUGMENTATION  # nothing recorded: one view
    assert chosen_augmentation(loaded, scales=[2]) == Augmentation(flip=True, scales=(2.0,))
    assert str(augmentation_of(loaded)) == "flip, scales 0.75 1" and str(NO_AUGMENTATION) == "none"


@pytest.mark.parametrize(
    "spec",
    [{"flip": "yes"}, {"scales": []}, {"scales": [0]}, {"scales": ["big"]}, {"rotate": 1}, [1]],
)
def test_metadata_refuses_a_malformed_record(spec):
    with pytest.raises(MetadataError, match="test_time_augmentation"):
        Metadata(test_time_augmentation=spec)


class Frames:
    """Four random 4-class frames with labels (some void), as the dataset readers give them."""

    num_classes, ignore_index, classes = 4, 255, ("a", "b", "c", "d")

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.items = []
        for _ in range(4):
            image = torch.rand(3, 40, 52, generator=generator) * 255
            label = torch.randint(0, 5, (40, 52), generator=generator)
            self.items.append((image, label.masked_fill(label == 4, 255)))  # 4: void

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def counts(model, dataset, labels_of):
    matrix = ConfusionMatrix(4, 255)
    for image, label in dataset:
        matrix.update(labels_of(model, image), label)
    return matrix.matrix


def test_evaluate_scores_with_the_recorded_augmentation():
    model, dataset = recorded_net(), Frames()

    def augmented(net, image):
        with torch.no_grad():
            views = class_probabilities(net, image[None], NORMALIZE, 1.0, Augmentation(**RECORDED))
        return views.argmax(1)[0]

    def plain(net, image):
        return predict_image(net, image, NORMALIZE)

    assert torch.equal(evaluate(model, dataset, preprocess=NORMALIZE).matrix,
                       counts(model, dataset, augmented))  # fmt: skip
    assert torch.equal(
        evaluate(model, dataset, preprocess=NORMALIZE, augmentation=NO_AUGMENTATION).matrix,
        counts(model, dataset, plain),
    )
    assert not torch.equal(counts(model, dataset, augmented), counts(model, dataset, plain))
    # score() itself (training's validation) scores one view unless given an augmentation
    assert torch.equal(score(model, dataset, NORMALIZE).matrix, counts(model, dataset, plain))


def test_augmentation_is_refused_for_a_two_headed_net():
    model = fcnseg.load(FIXTURES / "fcn8s_two_headed_v1.ckpt")
    with pytest.raises(SegmentError, match="single-task nets"):
        score(model, Frames(), NORMALIZE, augmentation=Augmentation(flip=True))
