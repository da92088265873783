"""fcn8s head to head with torchfcn in one process, timed in alternation.

Machine speed drifts by 10-20 % over minutes on a shared 2-core box, so ratios between rows
timed minutes apart (bench_speed.py against the peers' JSON) carry that much noise. Here
torchfcn's FCN8s, the plain FCN-8s baseline and fcnseg's ``ref fp32`` (NCHW and
channels-last) and ``fast fp32 cl`` paths run one call each per round, round after round, and
each round's time ratio is taken; the table gives the median time and the median per-round
ratio to torchfcn, and the range of the ratios.

torchfcn is imported from the peers' venv (``benchmarks/peers/setup.sh``): its site-packages
is appended to ``sys.path`` after ours, so this venv's torch (the same 2.13.0 wheel) is used.
Our ``ref fp32`` net gets torchfcn's weights, and the largest score difference is printed.

    python benchmarks/head_to_head.py [--sizes 500x500 360x480] [--batch 1] [--rounds 7]
        [--threads 2] [--peers-venv .venv-peers] [--json benchmarks/results/head_to_head.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from common import print_table, write_json

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "baselines"))
sys.path.insert(0, str(HERE / "peers"))
from plain_fcn8s import PlainFCN8s  # noqa: E402
from torchfcn_port import from_torchfcn  # noqa: E402

from fcnseg.inference.fast import optimize_for_inference  # noqa: E402
from fcnseg.models import fcn8s  # noqa: E402


def add_peers_site(venv: Path) -> None:
    sites = sorted(venv.glob("lib/python*/site-packages"))
    if not sites:
        raise SystemExit(f"no site-packages under {venv}; run benchmarks/peers/setup.sh")
    sys.path.append(str(sites[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", default=["500x500", "360x480"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--peers-venv", default=".venv-peers")
    parser.add_argument("--json", default="benchmarks/results/head_to_head.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    add_peers_site(Path(args.peers_venv))
    from run_peers import import_torchfcn

    torch.manual_seed(0)
    theirs = import_torchfcn().classes["fcn8s"](n_class=21).eval()
    for name, p in theirs.named_parameters():
        if name.startswith("score_"):  # torchfcn zero-initialises them: make scores informative
            torch.nn.init.normal_(p, std=0.01)
    state = from_torchfcn(theirs.state_dict())
    reference = fcn8s(num_classes=21).eval()
    reference.load_state_dict(state)
    reference_cl = fcn8s(num_classes=21).eval()
    reference_cl.load_state_dict(state)
    fast = fcn8s(num_classes=21, geometry="fast").eval()
    fast.load_state_dict(state)
    plain = PlainFCN8s().eval()
    impls = {
        "torchfcn 1.9.7": theirs,
        "plain": plain,
        "fcnseg ref fp32": optimize_for_inference(reference, channels_last=False),
        "fcnseg ref fp32 cl": optimize_for_inference(reference_cl, channels_last=True),
        "fcnseg fast fp32 cl": optimize_for_inference(fast, channels_last=True),
    }
    rows, parity = [], None
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        x = torch.randn(args.batch, 3, h, w)
        with torch.inference_mode():
            outputs = {name: f(x) for name, f in impls.items()}  # warm-up
        if parity is None:
            parity = float((outputs["fcnseg ref fp32"] - outputs["torchfcn 1.9.7"]).abs().max())
        times: dict[str, list[float]] = {name: [] for name in impls}
        for _ in range(args.rounds):
            for name, f in impls.items():
                with torch.inference_mode():
                    start = time.perf_counter()
                    f(x)
                    times[name].append(time.perf_counter() - start)
        base = times["torchfcn 1.9.7"]
        for name, seconds in times.items():
            rows.append(
                {"impl": name, "size": size, "batch": args.batch,
                 "ms": 1e3 * statistics.median(seconds),
                 "x torchfcn": statistics.median(s / b for s, b in zip(seconds, base)),
                 "ratio range": f"{min(s / b for s, b in zip(seconds, base)):.3f}-"
                                f"{max(s / b for s, b in zip(seconds, base)):.3f}"}
            )  # fmt: skip
    print_table(rows, ["impl", "size", "batch", "ms", "x torchfcn", "ratio range"])
    print(f"max |fcnseg ref - torchfcn| on the same weights: {parity:.3g}")
    write_json(args.json, "head_to_head", rows, parity_max_abs_diff=parity, args=vars(args))


if __name__ == "__main__":
    main()
