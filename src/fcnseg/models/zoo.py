"""Every net at a glance, as in Table 1 of the paper: parameters, receptive field, strides, cost.

Receptive field: of one cell of the coarsest scores (``score_fr``'s input), in input pixels,
from :func:`fcnseg.models.geometry.receptive_field` layer by layer. A branchy module (an
inception module, a residual block) reports its own via a ``receptive_field()`` method: the
largest over its branches, since the concatenated or summed output sees the union of their
windows. Global gates (squeeze-excitation) are not counted, nor is padding.

The paper's Table 1 gives 355 (AlexNet), 404 (VGG16) and 907 (GoogLeNet) pixels. The first two
agree; GoogLeNet's 907 counts the 7x7 average pool the FCN discards (715 + 6 * 32 = 907).

Cost: FLOPs (2 per multiply-add, convolutions and transposed convolutions) of one
``size x size`` image, counted by ``torch.utils.flop_counter.FlopCounterMode`` on a net built
on the meta device, so nothing is allocated or computed. Results are cached per process.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fcnseg.models import geometry
from fcnseg.models.registry import get_builder, list_models

NUM_CLASSES = 21  # PASCAL VOC, as in Table 1
FAST_ROWS = ("fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce")  # also listed in the fast geometry
Row = tuple[str, tuple[tuple[str, object], ...]]  # (arch, builder settings beyond the defaults)


def default_rows() -> list[Row]:
    """The rows of the table: every net of the registry at its defaults, in its order, and
    the VGG16 nets in the fast geometry too."""
    return [
        row
        for arch in list_models()
        for row in (
            [(arch, ()), (arch, (("geometry", "fast"),))] if arch in FAST_ROWS else [(arch, ())]
        )
    ]


@dataclass(frozen=True)
class ModelInfo:
    """One row of the table."""

    arch: str
    settings: tuple[tuple[str, object], ...]  # builder arguments beyond the defaults
    summary: str  # the builder's first docstring line
    parameters: int  # all parameters, frozen upsampling included
    receptive_field: int  # pixels seen by one cell of the coarsest scores
    stride: int  # of the coarsest scores (Table 1's "max stride")
    output_stride: int  # of the finest scores, before the final upsampling
    size: int  # side of the square input the cost is counted at
    gflops: float  # 1e9 FLOPs for one image

    @property
    def name(self) -> str:
        extra = ", ".join(f"{v}" for _, v in self.settings)
        return f"{self.arch} ({extra})" if extra else self.arch


def receptive_field(layers: Iterable[nn.Module]) -> tuple[int, int]:
    """(size, stride) in input pixels of the last layer's output cells, branchy modules included.

    Like :func:`fcnseg.models.geometry.receptive_field`, but a module with its own
    ``receptive_field()`` (largest over its branches) is asked for it.
    """
    size, stride = 1, 1
    for layer in layers:
        own = getattr(layer, "receptive_field", None)
        if callable(own):
            inner_size, inner_stride = own()
        elif isinstance(layer, nn.Sequential):
            inner_size, inner_stride = receptive_field(layer.children())
        else:
            inner_size, inner_stride = geometry.receptive_field([layer])
        size += (inner_size - 1) * stride
        stride *= inner_stride
    return size, stride


@functools.cache
def _describe(arch: str, size: int, settings: tuple[tuple[str, object], ...]) -> ModelInfo:
    with torch.device("meta"):
        model = get_builder(arch)(num_classes=NUM_CLASSES, **dict(settings)).eval()
        image = torch.empty(1, model.config.in_channels, size, size)
    with FlopCounterMode(display=False) as counter:
        model(image)
    rf, stride = receptive_field(model.backbone.layers_through(model.head))
    return ModelInfo(
        arch=arch,
        settings=settings,
        summary=(get_builder(arch).__doc__ or "").strip().splitlines()[0],
        parameters=sum(p.numel() for p in model.parameters()),
        receptive_field=rf,
        stride=stride,
        output_stride=model.alignments[-1].factor,
        size=size,
        gflops=counter.get_total_flops() / 1e9,
    )


def describe(arch: str, size: int = 500, **settings: object) -> ModelInfo:
    """The table row of ``arch`` built with ``settings`` (e.g. ``geometry="fast"``)."""
    get_builder(arch)  # UnknownModelError naming the known nets
    if size < 1:
        raise ValueError(f"size must be >= 1 pixel, got {size}")
    return _describe(arch, size, tuple(sorted(settings.items())))


def table(size: int = 500, archs: Sequence[str] | None = None) -> list[ModelInfo]:
    """Rows for ``archs`` (default: every builder, and the VGG16 nets' fast geometry)."""
    rows = default_rows() if archs is None else [(arch, ()) for arch in archs]
    return [describe(arch, size, **dict(settings)) for arch, settings in rows]


def format_table(rows: Sequence[ModelInfo]) -> str:
    """A plain-text table, one net per line."""
    size = rows[0].size if rows else 0
    header = ("net", "params", "rf px", "stride", "out stride", f"GFLOPs@{size}")
    lines = [
        (
            row.name,
            f"{row.parameters / 1e6:.1f}M",
            str(row.receptive_field),
            str(row.stride),
            str(row.output_stride),
            f"{row.gflops:.1f}",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths))
        )
        for line in [header, *lines]
    )
