"""Convolutionalization (section 3.1): the dense net equals the classifier on every window."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

import fcnseg
from fcnseg.models.surgery import (
    TransplantError,
    convolutionalize_vgg16,
    from_torchvision_vgg16,
    transplant_vgg16,
)
from helpers import TorchvisionStyleVGG16, randomize


@pytest.mark.parametrize("a, b", [(0, 0), (1, 2)])
def test_convolutionalized_net_equals_classifier_on_every_window(a, b):
    """Exact with unpadded convolutions: each cell sees exactly its 404 x 404 window.

    (Padded convolutions see zeros at a window's border but real pixels inside a larger
    image, so there the equality holds only away from window borders; see the next test.)
    """
    classifier = randomize(TorchvisionStyleVGG16(padding=0))
    window = 404  # VGG16's receptive field at fc6 with unpadded 3x3 convolutions
    dense = convolutionalize_vgg16(classifier.state_dict(), conv1_padding=0, padding=0)
    image = torch.randn(1, 3, window + 32 * a, window + 32 * b)
    with torch.no_grad():
        scores = dense(image)
        assert scores.shape == (1, 10, 1 + a, 1 + b)
        for i in range(1 + a):
            for j in range(1 + b):
                crop = image[:, :, 32 * i : 32 * i + window, 32 * j : 32 * j + window]
                torch.testing.assert_close(
                    scores[0, :, i, j], classifier(crop)[0], rtol=1e-4, atol=1e-4
                )


def test_padded_vgg16_at_224_and_fc_layers_on_every_window():
    classifier = randomize(TorchvisionStyleVGG16(padding=1))
    dense = convolutionalize_vgg16(classifier.state_dict())  # the classifier's own padding
    image = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(
            dense(image)[:, :, 0, 0], classifier(image), rtol=1e-4, atol=1e-4
        )
        # fc6/fc7/fc8 as convolutions over a (7 + a) x (7 + b) pool5 map == the fully
        # connected head on each 7 x 7 window.
        pool5 = torch.randn(1, dense.backbone.conv5_3.out_channels, 9, 10)
        layers = OrderedDict(dense.backbone.named_children())
        head = nn.Sequential(*[layers[n] for n in ("fc6", "relu6", "drop6", "fc7", "relu7")])
        scores = dense.fc8(head(pool5))
        for i in range(3):
            for j in range(4):
                window = pool5[:, :, i : i + 7, j : j + 7]
                expected = classifier.classifier(torch.flatten(window, 1))
                torch.testing.assert_close(scores[:, :, i, j], expected, rtol=1e-4, atol=1e-4)


def test_transplant_fills_backbone_from_file_and_zeroes_scores(tmp_path):
    classifier = randomize(TorchvisionStyleVGG16())  # width 1/16: fc 256, like the net's
    path = tmp_path / "vgg16.pth"
    torch.save(classifier.state_dict(), path)
    model = fcnseg.fcn8s(num_classes=5, width=1 / 16)
    nn.init.normal_(model.score_pool4.weight)
    filled = transplant_vgg16(model, path)
    assert len(filled) == 30 and "backbone.fc6.weight" in filled
    weights = from_torchvision_vgg16(classifier.state_dict())
    torch.testing.assert_close(model.backbone.fc6.weight, weights["fc6.weight"])
    torch.testing.assert_close(
        model.backbone.fc6.weight.reshape(256, -1), classifier.classifier[0].weight
    )
    torch.testing.assert_close(model.backbone.conv3_2.bias, classifier.features[12].bias)
    assert torch.count_nonzero(model.score_pool4.weight) == 0
    assert torch.count_nonzero(model.score_fr.weight) == 0


def test_transplant_errors_name_the_key(tmp_path):
    state = TorchvisionStyleVGG16().state_dict()
    model = fcnseg.fcn32s(num_classes=3, width=1 / 16)
    missing = {k: v for k, v in state.items() if k != "features.10.weight"}
    with pytest.raises(TransplantError, match="features.10.weight"):
        transplant_vgg16(model, missing)
    bad = dict(state)
    bad["classifier.0.weight"] = torch.zeros(256, 100)
    with pytest.raises(TransplantError, match="classifier.0.weight"):
        transplant_vgg16(model, bad)
    wider = TorchvisionStyleVGG16(fc=512).state_dict()
    with pytest.raises(TransplantError, match=r"fc6.weight: source shape \(512, 32, 7, 7\)"):
        transplant_vgg16(model, wider)
    with pytest.raises(TransplantError, match="does not exist"):
        transplant_vgg16(model, tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(TransplantError, match="junk.pth"):
        transplant_vgg16(model, tmp_path / "junk.pth")
