"""Speed and memory of fcn32s/16s/8s (VGG16) next to a plain FCN-8s and, from JSON, torchfcn.

In this process: every variant of ``speed_rows.VARIANTS`` (reference vs fast geometry,
dense vs per-class upsampling, channels-last, bfloat16, torch.compile), a training step at
360x480, the metrics rows, and benchmarks/baselines/plain_fcn8s.py on the same sizes. Peers
run in their own venv (benchmarks/peers/run_peers.py) and are merged from ``--peers``. Each
row's time is divided by torchfcn's for the same net, size and batch ("x torchfcn": below 1
is faster) and, for fcn8s, by the plain baseline's ("x plain").

    python benchmarks/bench_speed.py [--sizes 500x500 360x480] [--nets fcn32s fcn16s fcn8s]
        [--repeats 5] [--threads N] [--quick] [--batches 1 8] [--variants ...] [--no-train]
        [--no-metrics]
        [--peers benchmarks/results/peers.json]
        [--json benchmarks/results/speed.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import speed_rows as bench
import torch
from common import print_table, write_json

sys.path.insert(0, str(Path(__file__).resolve().parent / "baselines"))
from plain_fcn8s import PlainFCN8s  # noqa: E402

COLUMNS = ["kind", "impl", "net", "variant", "size", "batch", "ms", "img/s", "GFLOP/s",
           "peak MiB", "x torchfcn", "x plain"]  # fmt: skip
METRIC_COLUMNS = ["impl", "size", "ms", "x vs torchfcn", "x vs numpy"]


def plain_rows(sizes, batches, repeats, train=True) -> list[dict]:
    """The obvious FCN-8s: eval, inference_mode, NCHW fp32 forward; one training step."""
    model = PlainFCN8s().eval()
    rows = []
    for size in sizes:
        flops = bench.gflops("fcn8s", *size, "reference")
        for batch in batches:
            x = torch.randn(batch, 3, *size)
            with torch.inference_mode(), bench.peak_memory() as memory:
                seconds = bench.median_seconds(lambda x=x: model(x), repeats)
            rows.append(
                bench._row("fcn8s", "plain fp32", size, batch, seconds, flops * batch, memory)
                | {"kind": "forward", "impl": "plain"}
            )
    if not train:
        return rows
    seconds, memory = bench.train_step_seconds(model, bench.TRAIN_SIZE, max(1, repeats // 2), 21)
    flops = 3 * bench.gflops("fcn8s", *bench.TRAIN_SIZE, "reference")
    rows.append(
        bench._row("fcn8s", "plain fp32", bench.TRAIN_SIZE, 1, seconds, flops, memory)
        | {"kind": "train", "impl": "plain"}
    )
    return rows


def add_ratios(rows: list[dict]) -> None:
    """'x torchfcn' and 'x plain': this row's time over theirs (same kind, net, size, batch)."""

    def key(row):
        return row["kind"], row.get("net"), row["size"], row.get("batch")

    torchfcn = {key(r): r["ms"] for r in rows if r["impl"].startswith("torchfcn 1.9")}
    plain = {key(r): r["ms"] for r in rows if r["impl"] == "plain"}
    for row in rows:
        if row["kind"] == "metrics":
            continue
        if key(row) in torchfcn:
            row["x torchfcn"] = row["ms"] / torchfcn[key(row)]
        if key(row) in plain:
            row["x plain"] = row["ms"] / plain[key(row)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", default=["500x500", "360x480"])
    parser.add_argument("--nets", nargs="+", default=list(bench.DEFAULT_NETS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="batch 1, fewer variants")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--no-train", action="store_true", help="skip the training-step rows")
    parser.add_argument("--no-metrics", action="store_true", help="skip the metrics rows")
    parser.add_argument(
        "--variants", nargs="+", default=None, choices=list(bench.VARIANTS), metavar="VARIANT",
        help=f"default: all ({', '.join(bench.VARIANTS)}); --quick: {bench.QUICK_VARIANTS}",
    )  # fmt: skip
    parser.add_argument("--width", type=float, default=1.0, help="VGG16 channel multiplier")
    parser.add_argument("--peers", default="benchmarks/results/peers.json")
    parser.add_argument("--json", default="benchmarks/results/speed.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    batches = (1,) if args.quick else tuple(args.batches)
    result = bench.run(
        args.nets,
        sizes,
        args.repeats,
        quick=args.quick,
        batches=batches,
        net_width=args.width,
        variants=args.variants,
        train=not args.no_train,
        metrics=not args.no_metrics,
    )
    rows = result.pop("rows")
    if args.width == 1.0:
        rows += plain_rows(sizes, batches, 2 if args.quick else args.repeats, not args.no_train)
    peers = Path(args.peers)
    peer_info = {}
    if peers.exists():
        payload = json.loads(peers.read_text())
        rows += payload["rows"]
        diff = payload.get("parity_max_abs_diff")
        peer_info = {"peers_file": str(peers), "parity_max_abs_diff": diff}
    else:
        print(f"no peers JSON at {peers}: run benchmarks/peers/run_peers.py in .venv-peers")
    add_ratios(rows)
    print(f"matmul {result['matmul GFLOP/s']:.1f} GFLOP/s on {result['threads']} threads;"
          f" bf16 native: {result['bf16 native']}")  # fmt: skip
    print_table([r for r in rows if r["kind"] != "metrics"], COLUMNS)
    print()
    print_table([r for r in rows if r["kind"] == "metrics"], METRIC_COLUMNS)
    write_json(args.json, "speed", rows, **result, **peer_info, args=vars(args))


if __name__ == "__main__":
    main()
