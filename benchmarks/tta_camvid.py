"""Test-time augmentation on CamVid val: mean IU and seconds per frame with and without it.

Scores the CamVid val frames with ``fcnseg.segment`` four ways (none, ``flip``, scales
``0.75 1 1.25``, both) and prints mean IU (from one confusion matrix per way) and seconds per
frame. Needs a trained checkpoint (e.g. ``runs/camvid-cpu/best.pt`` from
``recipes/camvid-cpu.toml``). Run on a quiet machine:

    python benchmarks/tta_camvid.py --checkpoint runs/camvid-cpu/best.pt --threads 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import print_table, write_json

import fcnseg
from fcnseg.data import open_dataset
from fcnseg.evaluate.metrics import ConfusionMatrix

CAMVID = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "camvid"
WAYS = {  # explicit: a checkpoint's recorded augmentation is segment's default
    "none": {"flip": False, "scales": (1.0,)},
    "flip": {"flip": True, "scales": (1.0,)},
    "scales 0.75 1 1.25": {"flip": False, "scales": (0.75, 1.0, 1.25)},
    "flip + scales": {"flip": True, "scales": (0.75, 1.0, 1.25)},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--root", default=str(CAMVID))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="first N frames")
    parser.add_argument("--json", default="benchmarks/results/tta_camvid.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = fcnseg.load(args.checkpoint)
    dataset = open_dataset("camvid", args.root, "val")
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    rows = []
    for name, options in WAYS.items():
        matrix = ConfusionMatrix(dataset.num_classes, ignore_index=dataset.ignore_index)
        seconds = 0.0
        for index in range(count):
            image, label = dataset[index]
            start = time.perf_counter()
            labels = fcnseg.segment(model, image, **options)
            seconds += time.perf_counter() - start
            matrix.update(labels.long(), label)
        rows.append({"tta": name, "frames": count, "mean_iu": matrix.compute()["mean_iu"],
                     "s_per_frame": seconds / count})  # fmt: skip
    for row in rows:
        row["iu_change"] = row["mean_iu"] - rows[0]["mean_iu"]
        row["x_time"] = row["s_per_frame"] / rows[0]["s_per_frame"]
    print_table(rows, ["tta", "frames", "mean_iu", "iu_change", "s_per_frame", "x_time"])
    write_json(args.json, "tta_camvid", rows, checkpoint=str(args.checkpoint))


if __name__ == "__main__":
    main()
