"""The per-pixel loss, whole-image or sampled (section 3.4).

Whole-image training sums the loss over every output pixel. That equals patchwise training
with every receptive field of the image in the minibatch; keeping each final-layer cell only
with probability p (a Bernoulli mask) recovers patchwise training with sampled patches,
without recomputing the overlapping parts of the patches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

NORMALIZATIONS = ("mean", "sum")


def segmentation_loss(
    scores: Tensor,
    labels: Tensor,
    ignore_index: int = 255,
    weight: Tensor | None = None,
    normalize: str = "mean",
    sample_rate: float | None = None,
    rescale: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Cross-entropy of ``scores`` (N x K x H x W) against ``labels`` (N x H x W).

    Args:
        ignore_index: label value that contributes nothing.
        weight: per-class weights (K), e.g. median-frequency balancing.
        normalize: ``"mean"`` divides by the (weighted) number of kept pixels; ``"sum"`` is the
            reference Caffe nets' unnormalised loss (learning rates then scale with 1/pixels).
        sample_rate: keep each pixel's term with this probability (loss sampling); ``None``
            or 1 keeps all.
        rescale: with sampling, divide by ``sample_rate`` so the sampled loss is unbiased
            (for ``"sum"``; ``"mean"`` normalises by the kept pixels either way).
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    if sample_rate is not None and not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    per_pixel = F.cross_entropy(
        scores, labels, weight=weight, ignore_index=ignore_index, reduction="none"
    )
    kept = (labels != ignore_index).to(per_pixel.dtype)
    if weight is not None:
        kept = kept * weight.to(per_pixel.dtype)[labels.clamp(0, scores.shape[1] - 1)]
    if sample_rate is not None and sample_rate < 1:
        mask = torch.rand(labels.shape, generator=generator, device="cpu").to(labels.device)
        mask = (mask < sample_rate).to(per_pixel.dtype)
        per_pixel = per_pixel * mask
        kept = kept * mask
        if rescale and normalize == "sum":
            per_pixel = per_pixel / sample_rate
    total = per_pixel.sum()
    if normalize == "sum":
        return total
    return total / kept.sum().clamp_min(1e-12)
