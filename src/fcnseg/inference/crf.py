"""Mean-field refinement of class probabilities by a CRF with an appearance kernel.

FCN's scores are coarse where objects are thin: the net sees an image at its own input scale
and its last upsampling is bilinear, so a pole or a sign post bleeds into the wall behind it.
DeepLab (Chen et al., ICLR 2015) and CRF-RNN (Zheng et al., ICCV 2015, on FCN-8s) follow the
net with a fully connected CRF (Krahenbuhl and Koltun, NIPS 2011) whose pairwise term pulls
pixels of like colour, near each other, towards the same label. Here that CRF is taken over a
window of neighbours, as ConvCRF does (Teichmann and Cipolla, BMVC 2019), with the appearance
kernel only::

    k(i, j) = w exp(-|p_i - p_j|^2 / (2 spatial^2) - |I_i - I_j|^2 / (2 colour^2))

for pixels ``j != i`` within ``window x window`` of ``i`` (``p``: position on the grid the CRF
runs on, ``I``: the raw image's values there, RGB on 0..255), and the Potts compatibility.
Mean-field inference starts from the net's probabilities ``P`` and repeats
``Q_i = softmax(log P_i + sum_j k(i, j) Q_j)`` ``iterations`` times (the Potts penalty of the
other labels' mass differs from this by a constant per pixel, which the softmax drops).

It runs on the net's own input grid (the image resized by the net's input scale; the
probabilities averaged onto it), where the net's detail ends, and its result is resized
bilinearly back to the image. The defaults were chosen on CamVid frames of a sequence the net
never saw (docs/camvid-cpu.md, "A CRF after the net").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fcnseg.data.transforms import scaled_size
from fcnseg.errors import FcnsegError


class CRFError(FcnsegError, ValueError):
    """CRF parameters out of range; the message names the parameter."""


@dataclass(frozen=True)
class CRF:
    """The CRF's parameters: ``weight`` of the appearance kernel, its ``spatial`` width in
    pixels of the net's input grid and ``colour`` width on the 0..255 scale, the ``window``
    (odd) of neighbours each pixel sees, and the mean-field ``iterations``."""

    weight: float = 1.0
    spatial: float = 5.0
    colour: float = 5.0
    window: int = 11
    iterations: int = 5

    def __post_init__(self) -> None:
        for name in ("weight", "spatial", "colour"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CRFError(f"crf: {name} must be a number, got {value!r}")
            if not (math.isfinite(value) and (value >= 0 if name == "weight" else value > 0)):
                bound = ">= 0" if name == "weight" else "> 0"
                raise CRFError(f"crf: {name} must be a finite number {bound}, got {value!r}")
            object.__setattr__(self, name, float(value))
        for name, least in (("window", 3), ("iterations", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise CRFError(f"crf: {name} must be an integer >= {least}, got {value!r}")
        if self.window % 2 == 0:
            raise CRFError(f"crf: window must be odd, got {self.window}")

    def to_dict(self) -> dict[str, Any]:
        """The parameters as plain numbers: the metadata's and the JSON reports' form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, spec: Any) -> CRF:
        """Read :meth:`to_dict`'s form; unknown keys are an error naming them."""
        if not isinstance(spec, dict):
            raise CRFError(f"crf must be a dict of its parameters, got {spec!r}")
        unknown = sorted(set(spec) - set(cls.__dataclass_fields__))
        if unknown:
            raise CRFError(
                f"crf: unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(cls.__dataclass_fields__)}"
            )
        return cls(**spec)

    def __str__(self) -> str:
        return (
            f"crf (weight {self.weight:g}, spatial {self.spatial:g}, colour {self.colour:g}, "
            f"window {self.window}, {self.iterations} iterations)"
        )


def _shifted(x: Tensor, dy: int, dx: int, radius: int) -> Tensor:
    """``x[..., i + dy, j + dx]`` at every ``(i, j)`` of ``x`` padded by ``radius``."""
    height, width = x.shape[-2] - 2 * radius, x.shape[-1] - 2 * radius
    return x[..., radius + dy : radius + dy + height, radius + dx : radius + dx + width]


def _check_same_grid(probabilities: Tensor, image: Tensor) -> None:
    """Raise :class:`CRFError` unless the two have the same batch and size."""
    if probabilities.shape[-2:] != image.shape[-2:] or probabilities.shape[0] != image.shape[0]:
        raise CRFError(
            f"probabilities {tuple(probabilities.shape)} and image {tuple(image.shape)} "
            "must have the same batch and size"
        )


KERNEL_BYTES = 256 * 2**20  # the kernels of all offsets are kept while they fit in this


def _kernel(padded_image: Tensor, image: Tensor, dy: int, dx: int, crf: CRF) -> Tensor:
    """The appearance kernel between each pixel and its neighbour at ``(dy, dx)``: (N, 1, H, W)."""
    radius = crf.window // 2
    distance = (_shifted(padded_image, dy, dx, radius) - image).square_().sum(1, True)
    kernel = distance.mul_(-0.5 / crf.colour**2)
    return kernel.add_(-(dy * dy + dx * dx) / (2 * crf.spatial**2)).exp_().mul_(crf.weight)


def mean_field(probabilities: Tensor, image: Tensor, crf: CRF) -> Tensor:
    """``crf``'s mean-field inference on one grid: float ``(N, K, H, W)`` probabilities and
    float ``(N, C, H, W)`` image values (the colours the kernel compares) of the same size;
    returns the refined ``(N, K, H, W)`` probabilities (each pixel's sum to 1).

    Pixels outside the image are no neighbours. The kernel of each offset is computed once
    and kept while all of them fit in :data:`KERNEL_BYTES` (the CamVid grid of 180 x 240: 21
    MB), else again in every iteration, so memory stays bounded whatever the image.
    """
    _check_same_grid(probabilities, image)
    radius = crf.window // 2
    unary = probabilities.clamp_min(1e-8).log()  # (N, K, H, W)
    padded_image = F.pad(image, (radius,) * 4, mode="replicate")  # (N, C, H+2r, W+2r)
    offsets = [
        (dy, dx)
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
        if (dy, dx) != (0, 0)
    ]
    kernels = None
    if len(offsets) * image[:, :1].numel() * 4 <= KERNEL_BYTES:
        kernels = [_kernel(padded_image, image, dy, dx, crf) for dy, dx in offsets]
    q = probabilities
    for _ in range(crf.iterations):
        padded_q = F.pad(q, (radius,) * 4)  # zero outside the image: no neighbour there
        message = torch.zeros_like(q)
        for o, (dy, dx) in enumerate(offsets):
            kernel = kernels[o] if kernels else _kernel(padded_image, image, dy, dx, crf)
            message.addcmul_(kernel, _shifted(padded_q, dy, dx, radius))
        q = torch.softmax(unary + message, dim=1)
    return q


def refine(probabilities: Tensor, images: Tensor, crf: CRF, input_scale: float = 1.0) -> Tensor:
    """``probabilities`` (float ``(N, K, H, W)``) of ``images`` (``(N, C, H, W)`` raw values,
    RGB 0..255, the batch the net scored) refined by ``crf``'s mean-field inference on the
    net's input grid (the size :func:`fcnseg.data.transforms.scaled_size` gives for
    ``input_scale``), and resized back to ``(H, W)``."""
    _check_same_grid(probabilities, images)
    size = tuple(probabilities.shape[-2:])
    grid = scaled_size(*size, input_scale)
    image = images.to(probabilities.device, torch.float32)
    if grid != size:  # each grid cell the mean of the pixels it covers
        probabilities = F.interpolate(probabilities, size=grid, mode="area")
        image = F.interpolate(image, size=grid, mode="area")
    refined = mean_field(probabilities, image, crf)
    if grid != size:
        refined = F.interpolate(refined, size=size, mode="bilinear", align_corners=False)
    return refined


__all__ = ["CRF", "KERNEL_BYTES", "CRFError", "mean_field", "refine"]
