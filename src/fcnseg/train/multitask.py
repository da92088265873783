"""Training and scoring two-headed nets (SIFT Flow, section 5): one loss, two confusion matrices.

:class:`~fcnseg.models.multitask.TwoHeadedFCN` returns ``{"semantic": scores, "geometric":
scores}``; SIFT Flow with ``target="both"`` gives labels (2, H, W), semantic then geometric
(N x 2 x H x W once batched). The paper trains the heads with the sum of their two per-pixel
losses, each skipping its own void pixels, and reports each task's metrics.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from fcnseg.data.common import DatasetError
from fcnseg.evaluate.metrics import ConfusionMatrix
from fcnseg.models.multitask import HEADS
from fcnseg.train.losses import segmentation_loss
from fcnseg.train.recipe import Recipe, RecipeError

LABEL_ORDER = tuple(HEADS)  # ("semantic", "geometric"): the order of SiftFlow's label maps


def check_heads(recipe: Recipe, heads: tuple[str, ...], label: Tensor) -> tuple[str, ...]:
    """Return ``heads`` (the net's output names, ``()`` for one output) if the recipe can train
    them: one label map per head in the dataset's ``label`` ((heads, H, W), else (H, W)), no
    class weights, Lovasz or Jaccard loss or copy-paste for several heads, a ``best_metric`` of
    a head the net has. Raises naming the option to change."""
    maps = label.shape[0] if label.ndim == 3 else 0
    if maps != len(heads):
        want = f"{len(heads)} label maps ({', '.join(heads)})" if heads else "one"
        hint = "siftflow: options target = 'both'" if heads else "e.g. siftflow's target"
        raise DatasetError(
            f"{recipe.dataset} gives {maps or 'one'} label map(s) per image; net "
            f"{recipe.net!r} trains on {want} ({hint})"
        )
    one_output_only = (
        "lovasz_weight",
        "jaccard_weight",
        "ohem_fraction",
        "paste_classes",
        "coarse_loss_weight",
    )
    for field in one_output_only:
        if heads and getattr(recipe, field):
            raise RecipeError(
                f"recipe: {field} is for one-output nets; net {recipe.net!r} has heads "
                f"{', '.join(heads)}"
            )
    if heads and recipe.test_time_augmentation() is not None:
        raise RecipeError(
            "recipe: test_flip, test_scales and test_crf are for one-output nets; "
            f"net {recipe.net!r} has heads {', '.join(heads)}"
        )
    if heads and recipe.class_weights != "none":
        raise RecipeError(
            f"recipe: class_weights {recipe.class_weights!r} is for one-output nets; "
            f"net {recipe.net!r} has heads {', '.join(heads)}"
        )
    if recipe.best_metric.startswith("geometric_") and "geometric" not in heads:
        raise RecipeError(
            f"recipe: best_metric {recipe.best_metric!r} needs a geometric head; net "
            f"{recipe.net!r} has none (use {recipe.best_metric.removeprefix('geometric_')!r})"
        )
    return heads


def _split_labels(labels: Tensor) -> dict[str, Tensor]:
    """N x 2 x H x W labels to one N x H x W map per head."""
    if labels.ndim != 4 or labels.shape[1] != len(LABEL_ORDER):
        raise ValueError(
            f"labels of shape {tuple(labels.shape)}: expected (N, 2, H, W),"
            f" {' then '.join(LABEL_ORDER)} (siftflow's target='both', batched)"
        )
    return {head: labels[:, i] for i, head in enumerate(LABEL_ORDER)}


def two_headed_loss(
    scores: Mapping[str, Tensor],
    labels: Tensor,
    ignore_index: int = 255,
    weights: Mapping[str, Tensor | None] | None = None,
    normalize: str = "mean",
    sample_rate: float | None = None,
    rescale: bool = True,
    generator: torch.Generator | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """The semantic plus the geometric :func:`~fcnseg.train.losses.segmentation_loss`.

    Args:
        scores: ``{"semantic": N x K_sem x H x W, "geometric": N x K_geo x H x W}``.
        labels: N x 2 x H x W, semantic then geometric; ``ignore_index`` marks void in each.
        weights: optional per-class weights per head, e.g. ``{"semantic": median_freq}``.
        normalize, sample_rate, rescale, generator, label_smoothing: as for
            ``segmentation_loss``, per head
            (with sampling each head draws its own mask, in head order, from ``generator``).
    """
    missing = [head for head in LABEL_ORDER if head not in scores]
    if missing:
        raise ValueError(f"scores lack {missing}; a two-headed net gives {list(LABEL_ORDER)}")
    weights = weights or {}
    per_head = _split_labels(labels)
    return sum(
        segmentation_loss(
            scores[head],
            per_head[head],
            ignore_index,
            weights.get(head),
            normalize,
            sample_rate,
            rescale,
            generator,
            label_smoothing=label_smoothing,
        )
        for head in LABEL_ORDER
    )


class TwoHeadedConfusion:
    """One :class:`~fcnseg.evaluate.metrics.ConfusionMatrix` per head, fed from scores and
    N x 2 x H x W labels; ``compute()`` gives ``{"semantic": metrics, "geometric": metrics}``."""

    def __init__(self, num_classes: int = 33, num_geometric: int = 3, ignore_index: int = 255):
        self.matrices = {
            "semantic": ConfusionMatrix(num_classes, ignore_index),
            "geometric": ConfusionMatrix(num_geometric, ignore_index),
        }

    def update(self, scores: Mapping[str, Tensor], labels: Tensor) -> None:
        """Add a batch: ``scores[head]`` N x K x H x W, ``labels`` N x 2 x H x W."""
        per_head = _split_labels(labels)
        for head, matrix in self.matrices.items():
            matrix.update(scores[head].argmax(1), per_head[head])

    def reset(self) -> None:
        for matrix in self.matrices.values():
            matrix.reset()

    def compute(self) -> dict[str, dict[str, float | list[float]]]:
        return {head: matrix.compute() for head, matrix in self.matrices.items()}
