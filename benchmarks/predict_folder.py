"""Images per second of ``fcnseg predict`` on a folder: the DataLoader path against one by one.

- ``one-by-one``: :func:`fcnseg.inference.files.predict_images` as the loop before issue 14
  ran (``workers=0, batch_size=1, legend=False``: decode, score, write, one image at a time
  in this process, bare overlays);
- ``batched``: :func:`fcnseg.inference.files.predict_images` with ``--workers`` decoding
  processes and batches of ``--batch-size`` equal-size images (legends drawn as well).

Default folder: the CamVid val frames (``../shared/data/camvid/val``, 101 frames of 360 x 480);
default net: ``--checkpoint``, else an FCN-8s shaped like ``recipes/camvid-cpu.toml``'s net
(VGG16 x 0.25, BatchNorm, fast geometry, input scale 0.5, as the recipe's net was before it
took FCN-4s; random weights: speed does not depend on them). Each way writes into its own
temporary folder; the rounds alternate the two ways. Run on a quiet machine:

    python benchmarks/predict_folder.py --threads 2 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import print_table, write_json

import fcnseg
from fcnseg.inference.files import list_images, predict_images

CAMVID_VAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "camvid" / "val"


def camvid_cpu_net() -> torch.nn.Module:
    from fcnseg.data.transforms import ImageNetNormalize

    model = fcnseg.fcn8s(num_classes=11, width=0.25, batch_norm=True, geometry="fast").eval()
    model.meta = {"preprocessing": ImageNetNormalize().spec(), "input_scale": 0.5}
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(CAMVID_VAL))
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="first N images")
    parser.add_argument("--json", default="benchmarks/results/predict_folder.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = fcnseg.load(args.checkpoint) if args.checkpoint else camvid_cpu_net()
    images = list_images([args.folder])[: args.limit]
    ways = {
        "one-by-one": lambda out: predict_images(
            model, images, out, workers=0, batch_size=1, legend=False
        ),
        "batched": lambda out: predict_images(
            model, images, out, workers=args.workers, batch_size=args.batch_size
        ),
    }
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, run in ways.items():
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                run(out)
                seconds[name].append(time.perf_counter() - start)
    rows = [
        {
            "way": name,
            "images": len(images),
            "seconds": statistics.median(times),
            "images_per_s": len(images) / statistics.median(times),
        }
        for name, times in seconds.items()
    ]
    rows[1]["x_one_by_one"] = rows[1]["images_per_s"] / rows[0]["images_per_s"]
    print_table(rows, ["way", "images", "seconds", "images_per_s", "x_one_by_one"])
    write_json(args.json, "predict_folder", rows, folder=str(args.folder),
               workers=args.workers, batch_size=args.batch_size)  # fmt: skip


if __name__ == "__main__":
    main()
