"""Section 3.2: dense output by shift-and-stitch (f^2 passes) vs filter rarefaction (one pass).

Prints, for output strides f = 2, 4, 8, the time of the coarse net, of shift-and-stitch and of
the rarefied net on the same weights, checks that the two dense outputs agree, and writes JSON.

    python benchmarks/stitch.py [--size 96] [--json benchmarks/results/stitch.json]
"""

from __future__ import annotations

import argparse

import torch
from common import print_table, write_json
from speed_rows import median_seconds
from torch import nn

from fcnseg.models.stitch import rarefy, shift_and_stitch


def coarse_net(stages: int, width: int = 16) -> nn.Sequential:
    """Unpadded 3x3 conv + ReLU + 2x2 max pool stages (output stride 2^stages), then a score."""
    layers: list[nn.Module] = []
    channels = 3
    for _ in range(stages):
        layers += [nn.Conv2d(channels, width, 3), nn.ReLU(), nn.MaxPool2d(2, 2)]
        channels = width
    layers += [nn.Conv2d(channels, width, 3), nn.ReLU(), nn.Conv2d(width, 5, 1)]
    return nn.Sequential(*layers).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="benchmarks/results/stitch.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(1, 3, args.size, args.size)
    rows = []
    with torch.inference_mode():
        for stages in (1, 2, 3):
            f = 2**stages
            net = coarse_net(stages)
            dense_net = rarefy(net)
            coarse_s = median_seconds(lambda n=net: n(x), args.repeats)
            stitch_s = median_seconds(lambda n=net, f=f: shift_and_stitch(n, x, f), args.repeats)
            rarefied_s = median_seconds(lambda d=dense_net: d(x), args.repeats)
            dense = dense_net(x)
            h, w = dense.shape[-2:]
            stitched = shift_and_stitch(net, x, f)[:, :, :h, :w]
            rows.append(
                {
                    "stride f": f,
                    "passes": f * f,
                    "coarse s": coarse_s,
                    "stitch s": stitch_s,
                    "rarefied s": rarefied_s,
                    "stitch/coarse": stitch_s / coarse_s,
                    "stitch/rarefied": stitch_s / rarefied_s,
                    "max |diff|": float((stitched - dense).abs().max()),
                }
            )
    print_table(rows, list(rows[0]))
    write_json(args.json, "stitch", rows, size=args.size)


if __name__ == "__main__":
    main()
