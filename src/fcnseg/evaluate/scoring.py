"""Scoring a net on a dataset: the paper's four metrics (section 5) over whole images.

:func:`score` is the one scoring loop: training's validation, ``fcnseg eval`` and the demo
all run it. :func:`evaluate` is it with the settings a loaded checkpoint records (its
preprocessing, input scale and test-time augmentation).

As in the reference FCN evaluation, every image is scored whole (a batch of one, any size, no
crop) and one confusion matrix is accumulated over the split (see ``metrics.py``);
pixels labelled with the dataset's ``ignore_index`` count for nothing. Images are normalised
as the checkpoint's metadata says
(:func:`fcnseg.inference.predict.normalizer_for`), and a net trained on resized images
(``meta["input_scale"]``) scores resized images, its scores resized back to
the label's size, so the metrics are always at the labels' full resolution.

Also here: the metrics as a JSON-ready dict with per-class entries by name, and a figure of
the row-normalised confusion matrix (row i: where the pixels of true class i went, so the
diagonal is each class's accuracy).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from fcnseg.data.transforms import IGNORE_INDEX
from fcnseg.errors import FcnsegError, NonFiniteError
from fcnseg.evaluate.metrics import ConfusionMatrix
from fcnseg.inference.predict import (
    Preprocess,
    SegmentError,
    device_of,
    eval_mode,
    heads_of,
    input_scale_of,
    normalizer_for,
    num_classes_of,
    predict_image,
)
from fcnseg.inference.tta import (
    NO_AUGMENTATION,
    Augmentation,
    augmentation_of,
    class_probabilities,
)
from fcnseg.metadata import metadata_of

logger = logging.getLogger(__name__)

SUMMARY = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")  # the paper's four metrics
ANNOTATE_MAX = 25  # write each cell's value into the figure up to this many classes
TICKS_MAX = 100  # name every class on the axes up to this many classes


def _check_class_count(model: nn.Module, dataset: Any, source: str) -> None:
    classes, expected = num_classes_of(model), dataset.num_classes
    if classes != expected:
        raise FcnsegError(
            f"{source} predicts {classes} classes but the dataset {dataset!r} has {expected}"
        )
    for head, count in list(heads_of(model).items())[1:]:  # the main head's is checked above
        names = getattr(dataset, f"{head}_classes", None)
        if names is not None and len(names) != count:
            raise ValueError(
                f"{source}'s {head} head predicts {count} classes but the dataset {dataset!r} "
                f"has {len(names)} {head} classes"
            )


def head_matrices(model: nn.Module, dataset: Any) -> dict[str, ConfusionMatrix]:
    """One empty confusion matrix per output of a several-headed net (``{}`` for one output).

    The dataset's label is then (heads, H, W): label map k belongs to the net's k-th output
    (SIFT Flow with ``target="both"``: semantic, then geometric).
    """
    ignore = getattr(dataset, "ignore_index", IGNORE_INDEX)
    return {head: ConfusionMatrix(count, ignore) for head, count in heads_of(model).items()}


def check_head_labels(matrices: dict[str, ConfusionMatrix], label: Tensor, where: str) -> None:
    """Raise unless ``label`` holds one (H, W) map per head (or is (H, W) for one head)."""
    if not matrices and label.ndim != 2:
        raise FcnsegError(
            f"scoring needs (H, W) labels; {where} gives shape {tuple(label.shape)} "
            "(choose a single target, e.g. target=semantic)"
        )
    if matrices and (label.ndim != 3 or label.shape[0] != len(matrices)):
        raise FcnsegError(
            f"a net with heads {', '.join(matrices)} needs one label map per head, "
            f"({len(matrices)}, H, W); {where} gives shape {tuple(label.shape)} "
            "(e.g. siftflow's option target=both)"
        )


def check_compatible(model: nn.Module, dataset: Any, source: str = "model") -> None:
    """Raise unless the net has one output per dataset class; warn when names differ.

    ``source`` names the model in messages, e.g. the checkpoint's path.
    """
    _check_class_count(model, dataset, source)
    names = metadata_of(model).classes
    if names is not None and list(names) != list(dataset.classes):
        logger.warning(
            "%s's class names differ from the dataset's (%s... vs %s...); scoring by index",
            source,
            list(names)[:3],
            list(dataset.classes)[:3],
        )


def _where(dataset: Any, index: int) -> str:
    """The image file of sample ``index`` when the dataset lists its files, for messages."""
    files = getattr(dataset, "files", None)
    try:
        return str(files[index][0])
    except (TypeError, IndexError, KeyError):
        return f"sample {index}"


def score(
    model: nn.Module,
    dataset: Any,
    preprocess: Preprocess,
    scale: float = 1.0,
    dtype: torch.dtype | None = None,
    indices: Sequence[int] | None = None,
    num_workers: int = 0,
    progress: Callable[..., Any] | None = None,
    augmentation: Augmentation = NO_AUGMENTATION,
) -> ConfusionMatrix | dict[str, ConfusionMatrix]:
    """The confusion matrix of ``model`` over ``dataset``: the one scoring loop of fcnseg.

    Validation during training (which picks ``best.pt``), ``fcnseg eval`` (:func:`evaluate`)
    and the demo all call this, so the number that chose a checkpoint is the number the
    checkpoint scores again.

    ``dataset[i]`` is ``(image float (C, H, W) raw values, label int64 (H, W))``, with
    ``num_classes`` and ``ignore_index`` (every reader of ``fcnseg.data`` is). Each image is
    scored whole on the model's device by :func:`fcnseg.inference.predict.predict_image`:
    normalised by ``preprocess``, resized by ``scale`` (the factor the net was trained at)
    and its scores resized back to the label's size, under autocast to ``dtype`` (None:
    float32). ``indices`` picks the samples (default: all, in order; a process's shard in a
    distributed run); ``num_workers`` load them in parallel; ``progress(total=n)`` makes a
    progress bar (e.g. ``tqdm``). The model runs in eval mode; its mode is restored after.

    ``augmentation``: test-time flips, scales and CRF
    (:func:`fcnseg.inference.tta.class_probabilities`: the labels are the argmax of the views'
    mean probabilities, refined by the CRF if there is one); the default, one view and no CRF,
    is what validation during training scores.

    A net with several heads (the two-headed SIFT Flow net) gets one matrix per head,
    ``{"semantic": ..., "geometric": ...}``, from a dataset giving (heads, H, W) labels.
    """
    indices = list(range(len(dataset))) if indices is None else list(indices)
    device = device_of(model)
    if not augmentation.plain and heads_of(model):
        raise SegmentError(
            f"test-time augmentation ({augmentation}) takes single-task nets; this net has "
            f"the heads {list(heads_of(model))}"
        )
    matrix = ConfusionMatrix(dataset.num_classes, getattr(dataset, "ignore_index", IGNORE_INDEX))
    matrix.matrix = matrix.matrix.to(device)
    heads = head_matrices(model, dataset)
    loader = DataLoader(Subset(dataset, indices), batch_size=None, num_workers=num_workers)
    bar = progress(total=len(indices)) if progress is not None else None
    try:
        with eval_mode(model):
            for index, (image, label) in zip(indices, loader):
                check_head_labels(heads, label, repr(dataset))
                try:
                    if not augmentation.plain:
                        prediction = _augmented_labels(
                            model, image, preprocess, scale, augmentation, dtype
                        )
                    else:
                        prediction = predict_image(model, image, preprocess, scale, dtype)
                except (SegmentError, NonFiniteError) as error:  # wrong channels, NaN scores
                    raise type(error)(f"{_where(dataset, index)}: {error}") from None
                if heads:  # {head: (H, W)} against label maps (heads, H, W)
                    for k, (head, head_matrix) in enumerate(heads.items()):
                        head_matrix.update(prediction[head], label[k].to(device))
                else:
                    matrix.update(prediction, label.to(device))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    logger.info("scored %d images of %r", len(indices), dataset)
    return heads or matrix


@torch.inference_mode()
def _augmented_labels(
    model: nn.Module,
    image: Tensor,
    preprocess: Preprocess,
    scale: float,
    augmentation: Augmentation,
    dtype: torch.dtype | None,
) -> Tensor:
    """(H, W) labels of one (C, H, W) image: the argmax of its views' mean probabilities
    (after the augmentation's CRF, if it has one)."""
    batch = image[None].to(device_of(model))  # (1, C, H, W)
    return class_probabilities(model, batch, preprocess, scale, augmentation, dtype).argmax(1)[0]


def evaluate(
    model: nn.Module,
    dataset: Any,
    device: str | torch.device = "cpu",
    progress: Callable[..., Any] | None = None,
    preprocess: Preprocess | None = None,
    limit: int | None = None,
    dtype: torch.dtype | None = None,
    augmentation: Augmentation | None = None,
) -> ConfusionMatrix | dict[str, ConfusionMatrix]:
    """:func:`score` with what a loaded checkpoint records: its preprocessing, input scale and
    test-time augmentation.

    ``dataset`` as in :func:`score` (its class count must be the net's); the model is moved to
    ``device``; ``preprocess`` defaults to the checkpoint's
    (:func:`fcnseg.inference.predict.normalizer_for`); ``limit`` scores the first images only;
    ``dtype`` (bfloat16, or float16 on CUDA) scores under autocast; ``augmentation`` defaults
    to the checkpoint's (:func:`fcnseg.inference.tta.augmentation_of`; one view if it records
    none).
    """
    _check_class_count(model, dataset, "model")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (images), got {limit}")
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if preprocess is None:
        preprocess = normalizer_for(model)
    model.to(torch.device(device))
    if augmentation is None:
        augmentation = augmentation_of(model)
    return score(
        model,
        dataset,
        preprocess,
        input_scale_of(model),
        dtype,
        range(count),
        progress=progress,
        augmentation=augmentation,
    )


# --------------------------------------------------------------------------- reporting


def _number(value: float) -> float | None:
    """``None`` for an undefined (nan) metric, so the JSON stays standard."""
    return None if math.isnan(value) else float(value)


def metrics_json(
    metrics: dict[str, Any], classes: Sequence[str], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``extra``, then the four metrics, then ``per_class: {name: {"acc", "iu"}}``.

    ``metrics`` is :meth:`ConfusionMatrix.compute`'s dict; undefined values become ``None``.
    """
    names = [str(name) for name in classes]
    if len(names) != len(metrics["iu"]):
        raise ValueError(f"{len(names)} class names for {len(metrics['iu'])} classes")
    if len(set(names)) != len(names):
        raise ValueError(f"class names repeat: {sorted({n for n in names if names.count(n) > 1})}")
    payload = dict(extra or {})
    taken = payload.keys() & {*SUMMARY, "per_class"}
    if taken:
        raise ValueError(f"extra keys {sorted(taken)} would overwrite metrics")
    payload.update({key: _number(metrics[key]) for key in SUMMARY})
    payload["per_class"] = {
        name: {"acc": _number(acc), "iu": _number(iu)}
        for name, acc, iu in zip(names, metrics["acc"], metrics["iu"], strict=True)
    }
    return payload


def row_normalized(matrix: ConfusionMatrix | Tensor) -> Tensor:
    """``n_ij / t_i`` as float64 (K, K); rows of classes without labelled pixels are ``nan``."""
    counts = matrix.matrix if isinstance(matrix, ConfusionMatrix) else matrix
    counts = counts.detach().double().cpu()
    return counts / counts.sum(1, keepdim=True)


def confusion_matrix_figure(
    matrix: ConfusionMatrix | Tensor, classes: Sequence[str], path: str | os.PathLike
) -> Path:
    """Write a PNG of the row-normalised confusion matrix (true class down, predicted across).

    Cells hold their value up to ``ANNOTATE_MAX`` classes; rows of classes without labelled
    pixels are grey. Uses matplotlib's Agg canvas directly (no pyplot, no global backend).
    """
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "the confusion-matrix figure needs matplotlib: pip install matplotlib"
        ) from error
    rates = row_normalized(matrix).numpy()
    k = rates.shape[0]
    if len(classes) != k:
        raise ValueError(f"{len(classes)} class names for a {k} x {k} confusion matrix")
    side = min(30.0, max(4.0, 0.4 * k + 2.5))  # inches
    figure = Figure(figsize=(side + 1.0, side), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = matplotlib.colormaps["Blues"].with_extremes(bad="0.85")
    shown = axes.imshow(rates, cmap=colours, vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.02, label="fraction of true pixels")
    if k <= TICKS_MAX:
        axes.set_xticks(range(k), [str(c) for c in classes], rotation=90)
        axes.set_yticks(range(k), [str(c) for c in classes])
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title("confusion matrix (rows normalised)")
    if k <= ANNOTATE_MAX:
        for i in range(k):
            for j in range(k):
                if not math.isnan(rates[i, j]):
                    colour = "white" if rates[i, j] > 0.5 else "black"
                    text = f"{rates[i, j]:.2f}"
                    axes.text(j, i, text, ha="center", va="center", color=colour, fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


__all__ = [
    "check_compatible",
    "confusion_matrix_figure",
    "evaluate",
    "metrics_json",
    "row_normalized",
    "score",
]
