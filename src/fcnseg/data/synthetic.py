"""A synthetic segmentation task generated in code: shapes of several classes on textures.

Every image is drawn from its own seeded generator, so item ``i`` is the same on every run and
machine. Backgrounds are washed-out random gratings with noise; each shape class has a hue
family of its own, its shapes drawn with their own textures; shapes occlude one another.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.data import Dataset

from fcnseg.data.common import DatasetError
from fcnseg.data.palettes import voc_palette

SHAPES = ("background", "disc", "square", "triangle", "cross")


# Each shape class has its own hue family (degrees); backgrounds are desaturated. A net can
# start from colour and must learn shape to get the outlines right.
CLASS_HUES = (None, 0.0, 110.0, 220.0, 290.0)


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> Tensor:
    """An RGB colour (3 x 1 x 1, 0..255) from hue in degrees, saturation and value in 0..1."""
    channel = torch.tensor([5.0, 3.0, 1.0])
    k = (channel + hue / 60) % 6
    rgb = value - value * saturation * torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return (rgb * 255).reshape(3, 1, 1)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _texture(generator: torch.Generator, height: int, width: int, base: Tensor) -> Tensor:
    """A 3 x H x W texture in 0..255: a base colour, a random grating and pixel noise."""
    y = torch.arange(height, dtype=torch.float32)[:, None]
    x = torch.arange(width, dtype=torch.float32)[None, :]
    angle = _uniform(generator, 0, math.pi)
    period = _uniform(generator, 4, 16)
    grating = torch.sin((x * math.cos(angle) + y * math.sin(angle)) * 2 * math.pi / period)
    contrast = torch.rand(3, 1, 1, generator=generator) * 40
    noise = torch.randn(3, height, width, generator=generator) * 10
    return (base + contrast * grating + noise).clamp(0, 255)


def _color(generator: torch.Generator, cls: int) -> Tensor:
    if CLASS_HUES[cls] is None:  # background: any hue, washed out
        hue = _uniform(generator, 0, 360)
        return _hsv_to_rgb(hue, _uniform(generator, 0.0, 0.3), _uniform(generator, 0.3, 0.9))
    hue = CLASS_HUES[cls] + _uniform(generator, -15, 15)
    return _hsv_to_rgb(hue % 360, _uniform(generator, 0.6, 1.0), _uniform(generator, 0.6, 1.0))


def _shape_mask(kind: str, height: int, width: int, cy: float, cx: float, r: float) -> Tensor:
    y = torch.arange(height, dtype=torch.float32)[:, None] - cy
    x = torch.arange(width, dtype=torch.float32)[None, :] - cx
    if kind == "disc":
        return x**2 + y**2 <= r**2
    if kind == "square":
        return (x.abs() <= r * 0.85) & (y.abs() <= r * 0.85)
    if kind == "triangle":  # apex up, base at y = +r
        return (y <= r) & (y >= -r) & (x.abs() <= (y + r) / 2)
    if kind == "cross":
        arm = r / 2
        return ((x.abs() <= arm) & (y.abs() <= r)) | ((y.abs() <= arm) & (x.abs() <= r))
    raise ValueError(f"unknown shape {kind!r}; shapes: {SHAPES[1:]}")


def make_sample(seed: int, height: int, width: int, max_shapes: int = 3) -> tuple[Tensor, Tensor]:
    """One (image 3 x H x W float 0..255, label H x W int64) pair from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    image = _texture(generator, height, width, _color(generator, 0))
    label = torch.zeros(height, width, dtype=torch.int64)
    count = 1 + int(torch.randint(max_shapes, (), generator=generator))
    short = min(height, width)
    for _ in range(count):
        cls = 1 + int(torch.randint(len(SHAPES) - 1, (), generator=generator))
        r = short * (0.14 + 0.16 * float(torch.rand((), generator=generator)))
        cy = float(torch.rand((), generator=generator)) * height
        cx = float(torch.rand((), generator=generator)) * width
        mask = _shape_mask(SHAPES[cls], height, width, cy, cx, r)
        texture = _texture(generator, height, width, _color(generator, cls))
        image = torch.where(mask, texture, image)
        label[mask] = cls
    return image, label


class SyntheticShapes(Dataset):
    """``num_images`` generated pairs with sides drawn from ``sizes``; item i is fixed by seed.

    Each item is ``(image 3 x H x W float32 in 0..255, label H x W int64 in 0..4)``.
    """

    classes = list(SHAPES)
    num_classes = len(SHAPES)
    ignore_index = 255
    palette = voc_palette(len(SHAPES))

    def __init__(
        self,
        num_images: int,
        sizes: tuple[int, ...] = (48, 64, 80, 96),
        seed: int = 0,
        max_shapes: int = 3,
    ) -> None:
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        if not sizes or min(sizes) < 8:
            raise ValueError(f"sizes must be a non-empty tuple of sides >= 8, got {sizes}")
        self.num_images = num_images
        self.sizes = tuple(sizes)
        self.seed = seed
        self.max_shapes = max_shapes

    def __len__(self) -> int:
        return self.num_images

    def __repr__(self) -> str:
        return (
            f"SyntheticShapes(num_images={self.num_images}, sizes={self.sizes}, seed={self.seed})"
        )

    def size_of(self, index: int) -> tuple[int, int]:
        """(H, W) of item ``index``, known without generating it (for batching by size)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        pick = torch.randint(len(self.sizes), (2,), generator=generator)
        return self.sizes[int(pick[0])], self.sizes[int(pick[1])]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        height, width = self.size_of(index)
        return make_sample(self.seed * 1_000_003 + index + 7, height, width, self.max_shapes)


SPLITS = ("train", "val")  # generated with seeds 2 s + 1 and 2 s + 2 of the run's seed s


def synthetic_split(
    split: str,
    seed: int | str = 0,
    train_images: int | str = 2000,
    val_images: int | str = 100,
    sizes: str | int = "96,128,160",
    max_shapes: int | str = 3,
) -> SyntheticShapes:
    """The ``train`` or ``val`` split of a generated task, as ``open_dataset("synthetic", ...)``
    gives it: the two splits come from different seeds, so no image is in both.

    ``sizes``: image sides as a comma-separated string (recipe and command-line options are
    scalars), drawn per image and axis. Numbers may be given as text (``--option seed=3``).
    """
    if split not in SPLITS:
        raise DatasetError(f"synthetic data has the splits {', '.join(SPLITS)}, not {split!r}")
    numbers = {"seed": seed, "train_images": train_images, "val_images": val_images}
    numbers["max_shapes"] = max_shapes
    try:
        values = {key: int(value) for key, value in numbers.items()}
        sides = tuple(int(side) for side in str(sizes).split(","))
    except ValueError:
        raise DatasetError(
            f"synthetic options must be integers (sizes: sides like '96,128'), got {numbers}, "
            f"sizes={sizes!r}"
        ) from None
    count = values["train_images"] if split == "train" else values["val_images"]
    seed_of_split = 2 * values["seed"] + SPLITS.index(split) + 1
    return SyntheticShapes(count, sides, seed=seed_of_split, max_shapes=values["max_shapes"])
