"""How close tiled inference comes to whole-image inference with a trained net, on CamVid val.

CamVid frames (360 x 480) are small next to VGG16's receptive field (404 px), so each val frame
is upscaled ``--upscale`` times (bilinear; its labels nearest) to make an image that tiles. For
each overlap: the share of pixels whose tiled label equals the whole-image label (worst frame
and all pixels together), and mean IU of both against the truth. Overlaps and tiles are in input
pixels, as ``fcnseg predict --tile --overlap`` takes them (a net with input scale 0.5 sees half).

    python benchmarks/tile_agreement.py --checkpoint runs/camvid-cpu/best.pt --threads 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from common import print_table, write_json

import fcnseg
from fcnseg.data import open_dataset
from fcnseg.evaluate.metrics import ConfusionMatrix
from fcnseg.inference.tiling import net_geometry

CAMVID = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "camvid"
ONE_VIEW = {"flip": False, "scales": (1.0,)}  # not the checkpoint's test-time augmentation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--root", default=str(CAMVID))
    parser.add_argument("--upscale", type=int, default=2)
    parser.add_argument("--tile", type=int, default=768, help="input pixels")
    parser.add_argument(
        "--overlaps", type=int, nargs="+", default=None, help="input pixels (default: R/2, 3R/4)"
    )
    parser.add_argument("--every", type=int, default=5, help="every Nth val frame")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="benchmarks/results/tile_agreement.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = fcnseg.load(args.checkpoint)
    scale = fcnseg.metadata_of(model).input_scale
    field, stride = net_geometry(model)
    # default overlaps: half and three quarters of the field as the net sees it, in input px
    overlaps = args.overlaps or [round(field * share / scale) for share in (0.5, 0.75)]
    dataset = open_dataset("camvid", args.root, "val")
    frames = range(0, len(dataset), args.every)
    whole_cm = ConfusionMatrix(dataset.num_classes, ignore_index=dataset.ignore_index)
    tiled_cms = {o: ConfusionMatrix(dataset.num_classes, dataset.ignore_index) for o in overlaps}
    agree = {o: [] for o in overlaps}
    for index in frames:
        image, label = dataset[index]
        size = (image.shape[1] * args.upscale, image.shape[2] * args.upscale)
        image = F.interpolate(image[None], size, mode="bilinear", align_corners=False)[0]
        label = F.interpolate(label[None, None].float(), size, mode="nearest")[0, 0].long()
        whole = fcnseg.segment(model, image, tile_above=None, **ONE_VIEW).long()
        whole_cm.update(whole, label)
        for overlap in overlaps:
            tiled = fcnseg.segment(model, image, tile=args.tile, overlap=overlap, **ONE_VIEW).long()
            tiled_cms[overlap].update(tiled, label)
            agree[overlap].append(((tiled == whole).sum().item(), whole.numel()))
    whole_iu = whole_cm.compute()["mean_iu"]
    rows = []
    for overlap in overlaps:
        same = sum(a for a, _ in agree[overlap]) / sum(n for _, n in agree[overlap])
        worst = min(a / n for a, n in agree[overlap])
        tiled_iu = tiled_cms[overlap].compute()["mean_iu"]
        rows.append(
            {
                "tile": args.tile,
                "overlap": overlap,
                "overlap / field": overlap * scale / field,
                "frames": len(agree[overlap]),
                "agreement": same,
                "worst frame": worst,
                "mean IU whole": whole_iu,
                "mean IU tiled": tiled_iu,
            }
        )
    print(
        f"{args.checkpoint}: receptive field {field} px, stride {stride}, input scale {scale}; "
        f"val frames upscaled {args.upscale}x"
    )
    print_table(rows, list(rows[0]))
    write_json(args.json, "tile_agreement", rows, checkpoint=args.checkpoint, field=field)


if __name__ == "__main__":
    main()
