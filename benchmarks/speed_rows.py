"""In-process speed and memory rows for benchmarks/bench_speed.py (and the other scripts).

Each row times one configuration after warm-up (median of ``repeats``), in eval mode under
``torch.inference_mode`` for forward rows, and records its peak resident memory (CPU: the
highest RSS a sampling thread saw during the row; CUDA: the allocator's peak), its FLOPs
(``torch.utils.flop_counter`` on a meta-device copy, dense deconvolutions counted as the
reference runs them) and the achieved GFLOP/s, to set against :func:`matmul_gflops`.

Also here: the label maps and the rows of the confusion-matrix counters; torchfcn's weight
mapping and metrics, which these rows compare against, are in ``torchfcn_port.py``.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache

import numpy as np
import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode
from torchfcn_port import label_accuracy_score

from fcnseg.evaluate import pair_counts
from fcnseg.evaluate.metrics import ConfusionMatrix, confusion_counts
from fcnseg.inference.fast import bf16_supported, optimize_for_inference
from fcnseg.models import create_model

DEFAULT_NETS = ("fcn32s", "fcn16s", "fcn8s")
DEFAULT_SIZES = ((500, 500), (360, 480))
TRAIN_SIZE = (360, 480)
# (label, geometry, options for optimize_for_inference)
VARIANTS = {
    "ref fp32 dense-up": ("reference", {"channels_last": False, "per_class": False}),
    "ref fp32": ("reference", {"channels_last": False}),
    "ref fp32 cl": ("reference", {"channels_last": True}),
    "fast fp32 cl": ("fast", {"channels_last": True}),
    "fast bf16 cl": ("fast", {"channels_last": True, "dtype": torch.bfloat16}),
    "fast fp32 compile": ("fast", {"channels_last": True, "compile": True}),
}
QUICK_VARIANTS = ("ref fp32 dense-up", "ref fp32", "fast fp32 cl", "fast bf16 cl")


# ------------------------------------------------------------------------ timing and memory


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs, seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sync() -> None:
    if torch.cuda.is_initialized():  # only then can kernels be in flight (and it costs ~0)
        torch.cuda.synchronize()


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 2**20


_PAGE = os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_memory(interval: float = 0.002) -> Iterator[dict[str, float]]:
    """Yields a dict that holds ``peak_mib`` once the block ends (RSS on CPU, allocator on CUDA)."""
    result: dict[str, float] = {}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        yield result
        result["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        return
    peak = [_rss_mib()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mib())
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result["peak_mib"] = max(peak[0], _rss_mib())


@cache
def matmul_gflops(n: int = 2048, repeats: int = 3) -> float:
    """This machine's float32 matmul rate (n x n by n x n), GFLOP/s, at the current threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / median_seconds(lambda: a @ b, repeats) / 1e9


@cache
def gflops(arch: str, height: int, width: int, geometry: str, net_width: float = 1.0) -> float:
    """Forward FLOPs of one image, GFLOP (multiply-add = 2), counted on the meta device."""
    with torch.device("meta"):
        model = create_model(arch, geometry=geometry, width=net_width).eval()
        x = torch.empty(1, 3, height, width)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 1e9


# --------------------------------------------------------------------------------- the rows


def _size_label(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def forward_rows(
    nets: Sequence[str] = DEFAULT_NETS,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    batches: Sequence[int] = (1, 8),
    variants: Sequence[str] = tuple(VARIANTS),
    repeats: int = 5,
    net_width: float = 1.0,
    num_classes: int = 21,
) -> list[dict]:
    """One row per net x size x batch x variant (see ``VARIANTS``): eval-mode forward time."""
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"variants {sorted(unknown)} are not among {list(VARIANTS)}")
    rows = []
    for arch in nets:
        for label in variants:
            geometry, options = VARIANTS[label]
            if options.get("dtype") == torch.bfloat16 and not bf16_supported():
                label = f"{label} (emulated)"
            torch.manual_seed(0)
            model = create_model(arch, num_classes=num_classes, width=net_width, geometry=geometry)
            runner = optimize_for_inference(model, **options)
            for size in sizes:
                flops = gflops(arch, *size, geometry, net_width)
                for batch in batches:
                    x = torch.randn(batch, 3, *size)
                    with peak_memory() as memory:
                        seconds = median_seconds(lambda r=runner, x=x: r(x), repeats)
                    rows.append(
                        _row(arch, label, size, batch, seconds, flops * batch, memory)
                        | {"kind": "forward", "impl": "fcnseg"}
                    )
    return rows


def _row(arch, label, size, batch, seconds, flops, memory) -> dict:
    return {
        "net": arch,
        "variant": label,
        "size": _size_label(size),
        "batch": batch,
        "ms": seconds * 1e3,
        "img/s": batch / seconds,
        "GFLOP": flops,
        "GFLOP/s": flops / seconds,
        "peak MiB": memory.get("peak_mib"),
    }


def train_step_seconds(
    model: torch.nn.Module, size: tuple[int, int], repeats: int, num_classes: int
) -> tuple[float, dict]:
    """Median time of one SGD step (forward, summed cross-entropy, backward, update), batch 1."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-10, momentum=0.99)
    x = torch.randn(1, 3, *size)
    target = torch.randint(0, num_classes, (1, *size))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(
            model(x), target, ignore_index=255, reduction="sum"
        )
        loss.backward()
        optimizer.step()

    with peak_memory() as memory:
        seconds = median_seconds(step, repeats)
    return seconds, memory


def train_rows(
    nets: Sequence[str] = ("fcn8s",),
    size: tuple[int, int] = TRAIN_SIZE,
    repeats: int = 3,
    net_width: float = 1.0,
    num_classes: int = 21,
) -> list[dict]:
    """One training-step row per net and geometry (reference, fast; fp32, NCHW)."""
    rows = []
    for arch in nets:
        for geometry in ("reference", "fast"):
            torch.manual_seed(0)
            model = create_model(arch, num_classes=num_classes, width=net_width, geometry=geometry)
            seconds, memory = train_step_seconds(model, size, repeats, num_classes)
            flops = 3 * gflops(arch, *size, geometry, net_width)  # forward + ~2x backward
            label = "ref fp32" if geometry == "reference" else "fast fp32"
            rows.append(
                _row(arch, label, size, 1, seconds, flops, memory)
                | {"kind": "train", "impl": "fcnseg"}
            )
    return rows


# ------------------------------------------------------------------------------ the metrics


LABEL_MAPS = ("noise", "regions")


def label_maps(
    size: tuple[int, int] = (500, 500), num_classes: int = 21, seed: int = 0, kind: str = "noise"
) -> tuple[Tensor, Tensor]:
    """A (prediction, target) uint8 pair; the target's top 4% rows are ignore (255).

    ``noise``: every pixel drawn on its own (no two neighbours alike, the worst case for
    interleaved counters and the best for one table). ``regions``: what segmentations look
    like: the target is a random class per 25x25 block, the prediction the same blocks
    shifted by 3 pixels with one block in ten given another class.
    """
    if kind not in LABEL_MAPS:
        raise ValueError(f"label maps kind must be one of {LABEL_MAPS}, got {kind!r}")
    generator = torch.Generator().manual_seed(seed)
    if kind == "noise":
        pred = torch.randint(0, num_classes, size, generator=generator, dtype=torch.uint8)
        target = torch.randint(0, num_classes, size, generator=generator, dtype=torch.uint8)
    else:
        block, shift = 25, 3
        grid = (size[0] // block + 2, size[1] // block + 2)
        classes = torch.randint(0, num_classes, grid, generator=generator, dtype=torch.uint8)
        regions = classes.repeat_interleave(block, 0).repeat_interleave(block, 1)
        target = regions[: size[0], : size[1]].clone()
        flips = torch.rand(grid, generator=generator) < 0.1
        wrong = torch.where(flips, (classes + 1) % num_classes, classes)
        wrong = wrong.repeat_interleave(block, 0).repeat_interleave(block, 1)
        pred = wrong[shift : shift + size[0], shift : shift + size[1]].clone()
    target[: size[0] // 25] = 255
    return pred, target


def metrics_rows(
    size: tuple[int, int] = (500, 500),
    num_classes: int = 21,
    repeats: int = 20,
    rounds: int = 5,
    kinds: Sequence[str] = LABEL_MAPS,
) -> list[dict]:
    """Time per label-map pair of each way to count a confusion matrix (and score it).

    The ways take turns: each round times every way (median of ``repeats`` calls), and a
    row's ``ms`` and speed-ups are medians over the rounds of its time and of its per-round
    ratios, so a machine that slows down between minutes slows every way alike.
    """
    k = num_classes
    rows = []
    for kind in kinds:
        pred, target = label_maps(size, num_classes, kind=kind)
        pred_long, target_long = pred.long(), target.long()  # as argmax and our loaders give
        p_np, t_np = pred_long.numpy(), target_long.numpy()
        matrix = ConfusionMatrix(k)

        def numpy_bincount(t_np=t_np, p_np=p_np) -> None:
            keep = t_np != 255
            np.bincount(k * t_np[keep] + p_np[keep], minlength=k * k)

        ways = {
            "torchfcn label_accuracy_score": lambda t_np=t_np, p_np=p_np: label_accuracy_score(
                [t_np], [p_np], k
            ),
            "numpy bincount": numpy_bincount,
            "ConfusionMatrix.update (uint8)": lambda m=matrix, p=pred, t=target: m.update(p, t),
            "ConfusionMatrix.update (int64)": lambda m=matrix, p=pred_long, t=target_long: m.update(
                p, t
            ),
            "confusion_counts, torch.bincount (uint8)": lambda p=pred, t=target: confusion_counts(
                p, t, k, compiled=False
            ),
        }
        if pair_counts.available():
            ways["confusion_counts, compiled (uint8)"] = lambda p=pred, t=target: confusion_counts(
                p, t, k, compiled=True
            )
        times = {name: [] for name in ways}
        for fn in ways.values():  # warm-up (and compile)
            fn()
        for _ in range(rounds):
            for name, fn in ways.items():
                times[name].append(median_seconds(fn, repeats, warmup=0))
        base = times["torchfcn label_accuracy_score"], times["numpy bincount"]
        for name, seconds in times.items():
            rows.append(
                {
                    "kind": "metrics",
                    "impl": name,
                    "maps": kind,
                    "size": _size_label(size),
                    "ms": 1e3 * statistics.median(seconds),
                    "x vs torchfcn": statistics.median(b / s for b, s in zip(base[0], seconds)),
                    "x vs numpy": statistics.median(b / s for b, s in zip(base[1], seconds)),
                }
            )
    return rows


def run(
    nets: Sequence[str] = DEFAULT_NETS,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    repeats: int = 5,
    quick: bool = False,
    batches: Sequence[int] = (1, 8),
    train: bool = True,
    metrics: bool = True,
    net_width: float = 1.0,
    variants: Sequence[str] | None = None,
) -> dict:
    """All in-process rows: forward (per variant), training step, metrics; plus the machine.

    ``quick``: batch 1 only, two repeats and, unless ``variants`` names them, the variants in
    ``QUICK_VARIANTS`` (default: all of ``VARIANTS``).
    """
    if quick:
        batches, repeats = (1,), min(repeats, 2)
    if variants is None:
        variants = QUICK_VARIANTS if quick else tuple(VARIANTS)
    rows = forward_rows(nets, sizes, batches, variants, repeats, net_width)
    if train:
        rows += train_rows(nets[-1:], TRAIN_SIZE, max(1, repeats // 2), net_width)
    if metrics:
        rows += metrics_rows(repeats=5, rounds=2) if quick else metrics_rows()
    return {
        "matmul GFLOP/s": matmul_gflops(),
        "threads": torch.get_num_threads(),
        "bf16 native": bf16_supported(),
        "rows": rows,
    }
