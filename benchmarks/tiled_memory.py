"""Peak memory and time per megapixel of fcnseg.segment, tiled against whole-image inference.

Each measurement runs in a fresh process under ``/usr/bin/time -v`` (its "Maximum resident
set size" is the peak RSS: Python, torch, the net, the uint8 input image, the outputs and
every temporary). The child makes a random ``H x W`` RGB image as a uint8 array (what
``PIL`` gives for a photo), loads the checkpoint and calls ``fcnseg.segment`` ``--repeats``
times, printing the median seconds.

- ``whole``: ``segment(model, image, tile_above=None)``, the image through the net at once;
  skipped above ``--whole-limit`` pixels, where it does not fit.
- ``tiled``: ``segment(model, image, tile=--tile, overlap=--overlap)`` (default: the automatic
  plan, 1024 net pixels a side, overlap half the receptive field).
- ``baseline``: a 1 x 1 image: what Python, torch and the net take before any image.

Default net: ``--checkpoint`` if given, else one shaped like ``recipes/camvid-cpu.toml``'s
before it took FCN-4s (FCN-8s, VGG16 x 0.25, BatchNorm, fast geometry, 11 classes, input
scale 0.5, random weights: memory and time do not depend on the weights), saved to a temporary
file.

Targets (issue 14): 4000 x 3000 in <= 1 GB peak RSS, 10000 x 10000 in <= 2 GB, tiled time per
megapixel within 1.3x of whole where both fit. Run on a quiet machine:

    python benchmarks/tiled_memory.py --threads 2
    python benchmarks/tiled_memory.py --sizes 600x800 1200x1600 --repeats 1   # smoke run
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIME = "/usr/bin/time"
RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


def child(args: argparse.Namespace) -> None:
    """Runs in the measured process: prints one JSON line with the median seconds."""
    import numpy as np
    import torch

    import fcnseg

    torch.set_num_threads(args.threads)
    model = fcnseg.load(args.checkpoint)
    height, width = args.size
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    # tiled: --tile, else the automatic plan (tile_above=1 tiles any image)
    options = {"tile_above": None} if args.mode != "tiled" else {"tile": args.tile, "tile_above": 1}
    if args.mode == "tiled" and args.overlap is not None:
        options["overlap"] = args.overlap
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        labels = fcnseg.segment(model, image, **options)
        times.append(time.perf_counter() - start)
        del labels
    print(json.dumps({"seconds": statistics.median(times)}))


def camvid_cpu_checkpoint(path: Path) -> Path:
    """A random-weight FCN-8s shaped like recipes/camvid-cpu.toml's net, saved at ``path``."""
    import fcnseg
    from fcnseg.data.transforms import ImageNetNormalize

    model = fcnseg.fcn8s(num_classes=11, width=0.25, batch_norm=True, geometry="fast")
    return fcnseg.save(model, path, preprocessing=ImageNetNormalize().spec(), input_scale=0.5)


def measure(args: argparse.Namespace, checkpoint: Path, mode: str, size: tuple[int, int]) -> dict:
    command = [
        TIME, "-v", sys.executable, __file__, "--child", "--mode", mode,
        "--size", f"{size[0]}x{size[1]}", "--checkpoint", str(checkpoint),
        "--threads", str(args.threads), "--repeats", str(args.repeats if size != (1, 1) else 1),
    ]  # fmt: skip
    if args.tile is not None:
        command += ["--tile", str(args.tile)]
    if args.overlap is not None:
        command += ["--overlap", str(args.overlap)]
    done = subprocess.run(command, capture_output=True, text=True)
    found = RSS.search(done.stderr)
    if done.returncode != 0 or found is None:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"{mode} {size}: the child failed ({done.returncode}):\n{tail}")
    seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    megapixels = size[0] * size[1] / 1e6
    return {
        "mode": mode,
        "size": f"{size[1]}x{size[0]}",  # width x height, as photos are named
        "megapixels": round(megapixels, 3),
        "peak_rss_mib": int(found.group(1)) / 1024,
        "seconds": seconds,
        "s_per_mp": seconds / megapixels if size != (1, 1) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["3000x4000", "10000x10000"],
                        metavar="HxW", help="image sizes, height x width")  # fmt: skip
    parser.add_argument("--checkpoint", default=None, help="default: a CamVid-CPU-shaped net")
    parser.add_argument("--tile", type=int, default=None, help="default: the automatic plan")
    parser.add_argument("--overlap", type=int, default=None)
    parser.add_argument("--whole-limit", type=int, default=12_000_000, metavar="PIXELS",
                        help="largest image also scored whole")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="benchmarks/results/tiled_memory.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="tiled", help=argparse.SUPPRESS)
    parser.add_argument("--size", default="1x1", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.size = tuple(int(v) for v in args.size.split("x"))
        child(args)
        return
    if not Path(TIME).is_file():
        raise SystemExit(f"{TIME} not found (Debian/Ubuntu: apt-get install time)")
    from common import print_table, write_json

    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(args.checkpoint or camvid_cpu_checkpoint(Path(folder) / "net.pt"))
        rows = [measure(args, checkpoint, "baseline", (1, 1))]
        for size in sizes:
            if size[0] * size[1] <= args.whole_limit:
                rows.append(measure(args, checkpoint, "whole", size))
            rows.append(measure(args, checkpoint, "tiled", size))
            if rows[-2]["mode"] == "whole":
                rows[-1]["x_whole"] = rows[-1]["s_per_mp"] / rows[-2]["s_per_mp"]
            print_table(rows[-2:], ["mode", "size", "peak_rss_mib", "s_per_mp", "x_whole"])
    print()
    columns = ["mode", "size", "megapixels", "peak_rss_mib", "seconds", "s_per_mp", "x_whole"]
    print_table(rows, columns)
    write_json(args.json, "tiled_memory", rows, checkpoint=args.checkpoint or "camvid-cpu shape",
               tile=args.tile, overlap=args.overlap, repeats=args.repeats)  # fmt: skip


if __name__ == "__main__":
    main()
