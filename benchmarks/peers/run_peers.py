"""Time the peers in their own virtualenv and write JSON for benchmarks/bench_speed.py.

    .venv-peers/bin/python benchmarks/peers/run_peers.py [--sizes 500x500 360x480]
        [--nets fcn32s fcn16s fcn8s] [--repeats 5] [--threads N] [--quick]
        [--torchvision] [--json benchmarks/results/peers.json] [--parity-only]

torchfcn 1.9.7 (installed --no-deps by setup.sh): its models do ``import fcn`` (chainer's
package, which fails under numpy 2) only for download helpers, and its package __init__ pulls
in torchvision, skimage and pytz. So an empty stand-in ``fcn`` goes into sys.modules and the
``torchfcn`` / ``torchfcn.models`` packages are registered without running their __init__;
only the model files and utils.py are loaded. With fcnseg's src on the path, it also checks that
our fcn8s on the mapped weights gives torchfcn's scores (``max |diff|`` in the JSON).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[1] / "src")]
from common import machine, print_table, write_json  # noqa: E402
from speed_rows import median_seconds  # noqa: E402

TORCHFCN_CLASSES = {"fcn32s": "FCN32s", "fcn16s": "FCN16s", "fcn8s": "FCN8s"}


def import_torchfcn() -> types.SimpleNamespace:
    """torchfcn's model classes and label_accuracy_score, without its heavy package imports."""
    sys.modules.setdefault("fcn", types.ModuleType("fcn"))  # stand-in for chainer's `fcn`
    spec = importlib.util.find_spec("torchfcn")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError("torchfcn is not installed; run benchmarks/peers/setup.sh")
    root = Path(next(iter(spec.submodule_search_locations)))
    for name, path in (("torchfcn", root), ("torchfcn.models", root / "models")):
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules[name] = package
    classes = {
        arch: getattr(importlib.import_module(f"torchfcn.models.{arch}"), cls)
        for arch, cls in TORCHFCN_CLASSES.items()
    }
    utils = importlib.import_module("torchfcn.utils")
    return types.SimpleNamespace(classes=classes, label_accuracy_score=utils.label_accuracy_score)


def parity(torchfcn: types.SimpleNamespace) -> dict[str, float] | None:
    """max |ours - torchfcn| of fcn8s scores on the same (random) weights, or None: our net
    as built ("plain") and through the "ref fp32" fast path that bench_speed.py times."""
    try:
        from torchfcn_port import to_torchfcn

        from fcnseg.inference.fast import optimize_for_inference
        from fcnseg.models import fcn8s
    except ImportError as error:
        print(f"parity check skipped: {error}")
        return None
    torch.manual_seed(0)
    ours = fcn8s(num_classes=21).eval()
    for name, p in ours.named_parameters():
        if name.startswith("score_"):
            torch.nn.init.normal_(p, std=0.01)
    theirs = torchfcn.classes["fcn8s"](n_class=21).eval()
    theirs.load_state_dict(to_torchfcn(ours.state_dict()))
    x = torch.randn(1, 3, 64, 80)
    with torch.inference_mode():
        expected, plain = theirs(x), ours(x)
    fast = optimize_for_inference(ours, channels_last=False)(x)  # fc6, fc7 as matmuls
    return {
        "plain": float((plain - expected).abs().max()),
        "ref fp32": float((fast - expected).abs().max()),
        "scale": float(expected.abs().max()),
    }


def _torchvision_out(model: torch.nn.Module):
    return lambda x: model(x)["out"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", default=["500x500", "360x480"])
    parser.add_argument("--nets", nargs="+", default=list(TORCHFCN_CLASSES))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="batch 1, 2 repeats")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--torchvision", action="store_true", help="also fcn_resnet50")
    parser.add_argument("--json", default="benchmarks/results/peers.json")
    parser.add_argument(
        "--parity-only", action="store_true",
        help="only check fcn8s parity and record it in the existing --json file",
    )  # fmt: skip
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.parity_only:
        diff = parity(import_torchfcn())
        print(f"fcn8s parity, max |ours - torchfcn| on the same weights: {diff}")
        path = Path(args.json)
        payload = json.loads(path.read_text())
        payload["parity_max_abs_diff"] = diff
        path.write_text(json.dumps(payload, indent=2) + "\n")
        return
    if args.quick:
        args.batches, args.repeats = [1], min(args.repeats, 2)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    torchfcn = import_torchfcn()
    impl = "torchfcn 1.9.7"
    models = {arch: torchfcn.classes[arch](n_class=21).eval() for arch in args.nets}
    if args.torchvision:
        from torchvision.models.segmentation import fcn_resnet50

        models["fcn_resnet50"] = fcn_resnet50(weights=None, weights_backbone=None).eval()
    rows = []
    for arch, model in models.items():
        name = "torchvision" if arch == "fcn_resnet50" else impl
        forward = _torchvision_out(model) if arch == "fcn_resnet50" else model
        for h, w in sizes:
            for batch in args.batches:
                x = torch.randn(batch, 3, h, w)
                with torch.inference_mode():
                    seconds = median_seconds(lambda f=forward, x=x: f(x), args.repeats)
                rows.append(
                    {"kind": "forward", "impl": name, "net": arch, "variant": "eager fp32",
                     "size": f"{h}x{w}", "batch": batch, "ms": 1e3 * seconds,
                     "img/s": batch / seconds}
                )  # fmt: skip
    if not args.no_train and "fcn8s" in models:
        model = models["fcn8s"].train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=1e-10, momentum=0.99)
        x, target = torch.randn(1, 3, 360, 480), torch.randint(0, 21, (1, 360, 480))

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x), target, reduction="sum")
            loss.backward()
            optimizer.step()

        seconds = median_seconds(step, max(1, args.repeats // 2))
        rows.append(
            {"kind": "train", "impl": impl, "net": "fcn8s", "variant": "eager fp32",
             "size": "360x480", "batch": 1, "ms": 1e3 * seconds, "img/s": 1 / seconds}
        )  # fmt: skip
    rng = np.random.default_rng(0)
    label_pred = rng.integers(0, 21, (500, 500))
    label_true = rng.integers(0, 21, (500, 500))
    label_true[:20] = 255
    seconds = median_seconds(
        lambda: torchfcn.label_accuracy_score([label_true], [label_pred], 21), 20, warmup=2
    )
    rows.append(
        {"kind": "metrics", "impl": "torchfcn label_accuracy_score (imported)",
         "size": "500x500", "ms": 1e3 * seconds}
    )  # fmt: skip
    diff = parity(torchfcn)
    print_table(rows, ["kind", "impl", "net", "size", "batch", "ms", "img/s"])
    print(f"fcn8s parity, max |ours - torchfcn| on the same weights: {diff}")
    write_json(args.json, "peers", rows, parity_max_abs_diff=diff, peer_machine=machine())


if __name__ == "__main__":
    main()
