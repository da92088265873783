"""Test-time augmentation on CamVid val: mean IU and seconds per frame with and without it.

Scores the CamVid val frames with ``fcnseg.segment`` seven ways (none, ``flip``, scales
``0.75 1 1.25``, both; the CRF after one view; the recipe's flip and scales 1, 1.5, without
and with the CRF: :mod:`fcnseg.inference.crf`) and prints mean IU (from one confusion matrix
per way) and seconds per frame. Needs a trained checkpoint (e.g. ``runs/camvid-cpu/best.pt``
from ``recipes/camvid-cpu.toml``). Run on a quiet machine:

    python benchmarks/tta_camvid.py --checkpoint runs/camvid-cpu/best.pt --threads 2

``--split train --sequences 0006R0`` scores a held-out sequence's frames instead (the
checkpoint of a run that trained without them; README "CamVid from scratch on the CPU").
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
from fcnseg.inference.crf import CRF

CAMVID = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "camvid"
WAYS = {  # explicit: a checkpoint's recorded augmentation is segment's default
    "none": {"flip": False, "scales": (1.0,), "crf": False},
    "flip": {"flip": True, "scales": (1.0,), "crf": False},
    "scales 0.75 1 1.25": {"flip": False, "scales": (0.75, 1.0, 1.25), "crf": False},
    "flip + scales": {"flip": True, "scales": (0.75, 1.0, 1.25), "crf": False},
    "crf": {"flip": False, "scales": (1.0,), "crf": CRF()},
    "flip + scales 1 1.5": {"flip": True, "scales": (1.0, 1.5), "crf": False},
    "flip + scales 1 1.5 + crf": {"flip": True, "scales": (1.0, 1.5), "crf": CRF()},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--root", default=str(CAMVID))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--split", default="val")
    parser.add_argument("--sequences", nargs="+", default=None, help="only these sequences")
    parser.add_argument("--limit", type=int, default=None, help="first N frames")
    parser.add_argument("--json", default="benchmarks/results/tta_camvid.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = fcnseg.load(args.checkpoint)
    dataset = open_dataset("camvid", args.root, args.split, sequences=args.sequences)
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
    write_json(args.json, "tta_camvid", rows, checkpoint=str(args.checkpoint), split=args.split,
               sequences=args.sequences)  # fmt: skip


if __name__ == "__main__":
    main()
