"""Section 3.1: a convolutionalized classifier evaluated once over a whole image vs the same
classifier run patch by patch over every window of the image, on the same weights.

The classifier is VGG16 with unpadded ("valid") 3x3 convolutions, so each output cell depends
only on its own window (404 x 404 pixels, at a 32-pixel step) and the two ways must agree to
float tolerance; the script checks that and prints both times and their ratio.

    python benchmarks/convolutional_vs_patchwise.py [--width 0.25] [--cells 4]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import print_table, write_json

from fcnseg.models import VGG16
from fcnseg.models.surgery import ConvolutionalClassifier

WINDOW = 404  # VGG16's receptive field at fc6/fc7 with unpadded convolutions
STEP = 32  # its output stride


def valid_vgg16_classifier(width: float, classes: int = 1000) -> ConvolutionalClassifier:
    torch.manual_seed(0)
    backbone = VGG16(width=width, conv1_padding=0, padding=0)
    net = ConvolutionalClassifier(backbone, classes)
    for p in net.parameters():  # keep activations in range through 16 layers
        if p.ndim > 1:
            torch.nn.init.kaiming_normal_(p, nonlinearity="relu")
    return net.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=float, default=0.25, help="VGG16 channel multiplier")
    parser.add_argument("--cells", type=int, default=4, help="output cells per side")
    parser.add_argument("--json", default="benchmarks/results/convolutional_vs_patchwise.json")
    args = parser.parse_args()
    net = valid_vgg16_classifier(args.width)
    side = WINDOW + STEP * (args.cells - 1)
    image = torch.randn(1, 3, side, side)
    with torch.inference_mode():
        net(image[:, :, :WINDOW, :WINDOW])  # warm-up
        start = time.perf_counter()
        dense = net(image)  # (1, 1000, cells, cells)
        convolutional_s = time.perf_counter() - start
        start = time.perf_counter()
        patches = torch.empty_like(dense)
        for i in range(args.cells):
            for j in range(args.cells):
                window = image[:, :, STEP * i : STEP * i + WINDOW, STEP * j : STEP * j + WINDOW]
                patches[:, :, i, j] = net(window)[:, :, 0, 0]
        patchwise_s = time.perf_counter() - start
    diff = float((dense - patches).abs().max() / dense.abs().max())
    rows = [
        {
            "net": f"VGG16 x{args.width} (valid)",
            "image": f"{side}x{side}",
            "windows": args.cells**2,
            "convolutional s": convolutional_s,
            "patchwise s": patchwise_s,
            "speed-up": patchwise_s / convolutional_s,
            "max rel diff": diff,
        }
    ]
    print_table(rows, list(rows[0]))
    write_json(args.json, "convolutional_vs_patchwise", rows)


if __name__ == "__main__":
    main()
