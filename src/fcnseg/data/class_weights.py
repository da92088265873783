"""Class weights for imbalanced label sets: median frequency balancing (Eigen & Fergus, ICCV
2015), ``freq(c) = pixels of c / labelled pixels of the images containing c`` and
``weight(c) = median(freq) / freq(c)``, for a weighted cross-entropy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import Tensor

from fcnseg.data.transforms import IGNORE_INDEX

__all__ = ["ClassCounts", "class_pixel_counts", "median_frequency_weights"]


class ClassCounts(NamedTuple):
    """Per-class pixel statistics of a label set, both ``int64 [num_classes]``.

    ``pixels[c]``: pixels labelled c. ``image_pixels[c]``: labelled (non-ignore) pixels of all
    images that contain c at least once.
    """

    pixels: Tensor
    image_pixels: Tensor


def class_pixel_counts(
    labels: Iterable[Tensor], num_classes: int, ignore_index: int = IGNORE_INDEX
) -> ClassCounts:
    """Count class pixels in one pass with ``torch.bincount``.

    Each item of ``labels`` is one label map ``H x W`` or a batch of N maps ``N x H x W`` (each
    counted as its own image; padding with ``ignore_index`` is harmless). For datasets with K
    label maps per sample, pass one map each (e.g. ``label[0]``). Pixels equal to
    ``ignore_index`` are skipped; any other value outside ``0..num_classes-1`` is an error.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    pixels = torch.zeros(num_classes, dtype=torch.int64)
    image_pixels = torch.zeros(num_classes, dtype=torch.int64)
    for index, label in enumerate(labels):
        if not isinstance(label, Tensor) or label.is_floating_point() or label.ndim not in (2, 3):
            raise ValueError(
                f"labels[{index}] must be an integer tensor H x W or N x H x W, got "
                f"{getattr(label, 'shape', type(label).__name__)}"
            )
        for one in label.reshape(-1, *label.shape[-2:]).cpu():
            values = one[one != ignore_index].long()
            if values.numel() and (values.min() < 0 or values.max() >= num_classes):
                bad = values[(values < 0) | (values >= num_classes)][0].item()
                raise ValueError(
                    f"labels[{index}] has value {bad}, which is neither a class "
                    f"(0..{num_classes - 1}) nor ignore_index ({ignore_index})"
                )
            counts = torch.bincount(values, minlength=num_classes)
            pixels += counts
            image_pixels += (counts > 0).long() * values.numel()
    return ClassCounts(pixels, image_pixels)


def median_frequency_weights(
    label_iter_or_counts: Iterable[Tensor] | ClassCounts,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """Median frequency balancing weights, ``float32 [num_classes]``, for a weighted loss.

    ``freq(c) = pixels[c] / image_pixels[c]`` and ``weight(c) = median(freq) / freq(c)``, so a
    class at the median frequency gets weight 1 and rarer classes more. The median is taken over
    the classes that occur (the mean of the two middle values for an even count); classes never
    seen get weight 0. Pass the label maps (see :func:`class_pixel_counts`) or their
    :class:`ClassCounts`.
    """
    if isinstance(label_iter_or_counts, ClassCounts):
        counts = label_iter_or_counts
        for name, value in zip(counts._fields, counts, strict=True):
            if value.shape != (num_classes,):
                raise ValueError(
                    f"ClassCounts.{name} has shape {tuple(value.shape)}, expected "
                    f"({num_classes},) for num_classes={num_classes}"
                )
    else:
        counts = class_pixel_counts(label_iter_or_counts, num_classes, ignore_index)
    pixels = counts.pixels.double()
    seen = pixels > 0
    if not seen.any():
        raise ValueError("median_frequency_weights: no labelled pixels (every pixel is ignore)")
    freq = pixels[seen] / counts.image_pixels[seen].double()
    weights = torch.zeros(num_classes, dtype=torch.float64)
    weights[seen] = torch.quantile(freq, 0.5) / freq
    return weights.float()
