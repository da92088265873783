"""Small nets for the inference tests: a random FCN whose labels vary, and a tiny conv net."""

from __future__ import annotations

import torch
from torch import nn

import fcnseg
from fcnseg.data.transforms import Normalize

NORMALIZE = Normalize(mean=(128.0,) * 3, std=(64.0,) * 3)
CLASSES = ["sky", "road", "car", "tree"]
PALETTE = [[70, 130, 180], [128, 64, 128], [0, 0, 142], [107, 142, 35]]


def random_fcn(seed: int = 1, geometry: str = "fast", num_classes: int = 4) -> nn.Module:
    """A width-1/16 FCN-8s with He-initialised convolutions and random, channel-centred score
    layers (FCN score layers start at zero, which would label every pixel 0), so that its
    labels vary over an image of shapes; metadata as a checkpoint would carry it."""
    torch.manual_seed(seed)
    model = fcnseg.fcn8s(num_classes=num_classes, width=1 / 16, geometry=geometry).eval()
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d) and not name.startswith("score"):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
        for name, parameter in model.named_parameters():
            if name.startswith("score") and parameter.ndim == 4:
                nn.init.normal_(parameter)
                parameter.sub_(parameter.mean(1, keepdim=True))
    model.metadata = fcnseg.Metadata.from_dict(
        {
            "preprocessing": NORMALIZE.spec(),
            "classes": CLASSES[:num_classes],
            "palette": PALETTE[:num_classes],
        }
    )
    return model


class TinyConvNet(nn.Module):
    """Two 3x3 convolutions (receptive field 5, stride 1): scores depend on a 5x5 window only."""

    def __init__(self, num_classes: int = 3, symmetric: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, num_classes, 3, padding=1)
        )
        if symmetric:  # kernels mirror-symmetric left-right: the net commutes with flips
            with torch.no_grad():
                for layer in (self.body[0], self.body[2]):
                    layer.weight.copy_((layer.weight + layer.weight.flip(-1)) / 2)
        self.metadata = fcnseg.Metadata(preprocessing=NORMALIZE.spec())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (N, K, H, W)
