"""Section 3.1 on FCN-AlexNet's backbone: one convolutional pass equals a classifier per window."""

import torch
from torch import nn

from fcnseg.models.backbones.alexnet import AlexNet
from fcnseg.models.geometry import receptive_field
from fcnseg.models.surgery import ConvolutionalClassifier


def test_alexnet_dense_scores_equal_the_classifier_on_each_window():
    torch.manual_seed(0)
    net = ConvolutionalClassifier(AlexNet(width=0.25, conv1_padding=0), 10).double().eval()
    for layer in net.modules():  # unpadded layers, floor pooling: each cell sees its window only
        if isinstance(layer, nn.Conv2d):
            layer.padding = (0, 0)
        if isinstance(layer, nn.MaxPool2d):
            layer.ceil_mode = False
    window, stride = receptive_field(net.backbone.children())
    assert (window, stride) == (355, 32)
    image = torch.randn(1, 3, window + 32, window + 64, dtype=torch.float64)
    with torch.no_grad():
        dense = net(image)
        assert dense.shape == (1, 10, 2, 3)
        for i in range(2):
            for j in range(3):
                crop = image[:, :, 32 * i : 32 * i + window, 32 * j : 32 * j + window]
                torch.testing.assert_close(dense[:, :, i, j], net(crop)[:, :, 0, 0])
