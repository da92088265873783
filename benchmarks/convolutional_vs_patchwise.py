"""Section 3.1: a convolutionalized classifier evaluated once over a whole image vs the same
classifier run patch by patch over every window of the image, on the same weights.

Two classifiers, as in the paper: AlexNet (CaffeNet layout) and VGG16. Both use unpadded
("valid") layers and floor-mode pooling here, so each output cell depends only on its own
window (the net's receptive field: 355 pixels for AlexNet, 404 for VGG16, at a 32-pixel step)
and the two ways must agree to float tolerance; the script checks that and prints both times
and their ratio.

    python benchmarks/convolutional_vs_patchwise.py [--cells 4] [--vgg-width 0.25]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import print_table, write_json
from torch import nn

from fcnseg.models import VGG16
from fcnseg.models.backbones.alexnet import AlexNet
from fcnseg.models.geometry import receptive_field
from fcnseg.models.surgery import ConvolutionalClassifier

STEP = 32  # output stride of both nets


def valid(classifier: ConvolutionalClassifier) -> ConvolutionalClassifier:
    """No padding anywhere, floor-mode pooling, weights drawn to keep activations in range."""
    torch.manual_seed(0)
    for layer in classifier.modules():
        if isinstance(layer, nn.Conv2d):
            layer.padding = (0, 0)
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        if isinstance(layer, nn.MaxPool2d):
            layer.ceil_mode = False
    return classifier.eval()


def compare(name: str, net: ConvolutionalClassifier, cells: int) -> dict:
    window, stride = receptive_field(net.backbone.children())
    assert stride == STEP
    side = window + STEP * (cells - 1)
    image = torch.randn(1, 3, side, side)
    with torch.inference_mode():
        net(image[:, :, :window, :window])  # warm-up
        start = time.perf_counter()
        dense = net(image)  # (1, 1000, cells, cells)
        convolutional_s = time.perf_counter() - start
        start = time.perf_counter()
        patches = torch.empty_like(dense)
        for i in range(cells):
            for j in range(cells):
                crop = image[:, :, STEP * i : STEP * i + window, STEP * j : STEP * j + window]
                patches[:, :, i, j] = net(crop)[:, :, 0, 0]
        patchwise_s = time.perf_counter() - start
    return {
        "net": name,
        "window": window,
        "image": f"{side}x{side}",
        "windows": cells * cells,
        "convolutional s": convolutional_s,
        "patchwise s": patchwise_s,
        "speed-up": patchwise_s / convolutional_s,
        "max rel diff": float((dense - patches).abs().max() / dense.abs().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=4, help="output cells per side")
    parser.add_argument("--alexnet-width", type=float, default=1.0)
    parser.add_argument("--vgg-width", type=float, default=0.25)
    parser.add_argument("--json", default="benchmarks/results/convolutional_vs_patchwise.json")
    args = parser.parse_args()
    alexnet = AlexNet(width=args.alexnet_width, conv1_padding=0)
    vgg = VGG16(width=args.vgg_width, conv1_padding=0, padding=0)
    rows = [
        compare(
            f"AlexNet x{args.alexnet_width}",
            valid(ConvolutionalClassifier(alexnet, 1000)),
            args.cells,
        ),
        compare(f"VGG16 x{args.vgg_width}", valid(ConvolutionalClassifier(vgg, 1000)), args.cells),
    ]
    print_table(rows, list(rows[0]))
    write_json(args.json, "convolutional_vs_patchwise", rows)


if __name__ == "__main__":
    main()
