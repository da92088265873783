"""The per-pixel loss, whole-image or sampled (section 3.4).

Whole-image training sums the loss over every output pixel. That equals patchwise training
with every receptive field of the image in the minibatch; keeping each final-layer cell only
with probability p (a Bernoulli mask) recovers patchwise training with sampled patches,
without recomputing the overlapping parts of the patches.
"""

from __future__ import annotations

import math

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
    lovasz_weight: float = 0.0,
    jaccard_weight: float = 0.0,
    ohem_fraction: float = 0.0,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy of ``scores`` (N x K x H x W) against ``labels`` (N x H x W), plus
    ``lovasz_weight`` times :func:`lovasz_softmax_loss` and ``jaccard_weight`` times
    :func:`soft_jaccard_loss` (each over every labelled pixel, unweighted and unsampled) when
    they are above 0.

    Args:
        ignore_index: label value that contributes nothing.
        weight: per-class weights (K), e.g. median-frequency balancing.
        normalize: ``"mean"`` divides by the (weighted) number of kept pixels; ``"sum"`` is the
            reference Caffe nets' unnormalised loss (learning rates then scale with 1/pixels).
        sample_rate: keep each pixel's term with this probability (loss sampling); ``None``
            or 1 keeps all.
        rescale: with sampling, divide by ``sample_rate`` so the sampled loss is unbiased
            (for ``"sum"``; ``"mean"`` normalises by the kept pixels either way).
        ohem_fraction: above 0, online hard example mining (bootstrapped cross-entropy, Wu,
            Shen & van den Hengel 2016): only this share of the batch's kept pixels, those of
            the largest (weighted) loss, count; ``"mean"`` then divides by their weight.
        label_smoothing: the cross-entropy against ``1 - label_smoothing`` on the label and
            ``label_smoothing / K`` on every class (Szegedy et al. 2016; ``F.cross_entropy``'s,
            whose class weights weigh each class's share of the smoothed target); 0: none.
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    if sample_rate is not None and not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    per_pixel = F.cross_entropy(
        scores,
        labels,
        weight=weight,
        ignore_index=ignore_index,
        reduction="none",
        label_smoothing=label_smoothing,
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
    if 0 < ohem_fraction < 1:
        hardest = hardest_pixels(per_pixel, kept > 0, ohem_fraction).to(per_pixel.dtype)
        per_pixel = per_pixel * hardest
        kept = kept * hardest
    total = per_pixel.sum()
    loss = total if normalize == "sum" else total / kept.sum().clamp_min(1e-12)
    if lovasz_weight > 0:
        loss = loss + lovasz_weight * lovasz_softmax_loss(scores, labels, ignore_index)
    if jaccard_weight > 0:
        loss = loss + jaccard_weight * soft_jaccard_loss(scores, labels, ignore_index)
    return loss


def hardest_pixels(per_pixel: Tensor, kept: Tensor, fraction: float) -> Tensor:
    """A boolean mask of the ``ceil(fraction * kept pixels)`` kept pixels of largest
    ``per_pixel`` loss (ties broken by position, so the mask is a function of the losses)."""
    count = int(kept.sum())
    take = math.ceil(fraction * count)
    if take >= count:
        return kept.clone()
    losses = per_pixel.detach().flatten().masked_fill(~kept.flatten(), -math.inf)
    mask = torch.zeros(losses.numel(), dtype=torch.bool, device=losses.device)
    mask[losses.topk(take, sorted=False).indices] = True
    return mask.view_as(kept)


def soft_jaccard_loss(scores: Tensor, labels: Tensor, ignore_index: int = 255) -> Tensor:
    """1 - the soft IU of the softmax of ``scores``, averaged over the classes present in the
    batch's labels (Rahman & Wang, ISVC 2016): for class c, with ``p_c`` its probabilities and
    ``y_c`` the 0/1 truth over every labelled pixel of the batch,
    ``IU_c = sum(p_c y_c) / sum(p_c + y_c - p_c y_c)``, which is the IU itself on 0/1
    probabilities. A mean-IU surrogate without Lovasz-softmax's sorts: a few passes over the
    scores. Pixels labelled ``ignore_index`` take no part; a batch with none labelled gives 0.
    Computed in float32.
    """
    num_classes = scores.shape[1]
    kept = labels != ignore_index
    probabilities = scores.float().softmax(1) * kept.unsqueeze(1)
    truth = F.one_hot(labels.masked_fill(~kept, 0), num_classes).movedim(-1, 1)
    truth = truth * kept.unsqueeze(1)
    intersection = (probabilities * truth).sum((0, 2, 3))
    total = truth.sum((0, 2, 3))
    union = probabilities.sum((0, 2, 3)) + total - intersection
    present = total > 0
    if not present.any():
        return scores.sum() * 0.0
    return 1.0 - (intersection[present] / union[present]).mean()


def lovasz_softmax_loss(scores: Tensor, labels: Tensor, ignore_index: int = 255) -> Tensor:
    """The Lovasz-softmax loss (Berman, Rannen Triki & Blaschko, CVPR 2018): a convex surrogate
    of 1 - IU, averaged over the classes present in the batch's labels.

    For each class c, the pixels' errors ``|[label = c] - p_c|`` (``p`` the softmax of
    ``scores``) are sorted in decreasing order and weighted by the gradient of the Jaccard loss
    along that order (the Lovasz extension), so the loss is the IU loss's tightest convex
    extension to probabilities. Pixels labelled ``ignore_index`` take no part; a batch with none
    labelled gives 0. Computed over all pixels of the batch together, in float32.
    """
    num_classes = scores.shape[1]
    probabilities = scores.float().softmax(1).movedim(1, -1).reshape(-1, num_classes)
    labels = labels.reshape(-1)
    kept = labels != ignore_index
    probabilities, labels = probabilities[kept], labels[kept]
    losses = []
    for c in labels.unique().tolist():
        truth = (labels == c).float()
        errors, order = (truth - probabilities[:, c]).abs().sort(descending=True)
        losses.append(torch.dot(errors, _jaccard_steps(truth[order])))
    if not losses:
        return scores.sum() * 0.0
    return torch.stack(losses).mean()


def _jaccard_steps(truth_sorted: Tensor) -> Tensor:
    """Increments of the Jaccard loss as the pixels (sorted by error, 1 = of the class) are
    taken as wrong one after another: the Lovasz extension's weights."""
    total = truth_sorted.sum()
    intersection = total - truth_sorted.cumsum(0)
    union = total + (1.0 - truth_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
