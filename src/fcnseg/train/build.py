"""From a recipe to the pieces of a run: data, preprocessing, net, initialisation, optimiser.

Initialisation (section 4.1, 4.2 of the paper): ``init`` names an ImageNet classifier
("imagenet" or a registry name, fetched by :mod:`fcnseg.hub`; or a torchvision-format VGG16
file), whose convolutionalized weights fill the backbone (score layers stay zero), or an
fcnseg checkpoint of a coarser net: staged training starts FCN-16s from FCN-32s and FCN-8s
from FCN-16s by copying every entry whose name and shape match. The new skip score layers are
zero-initialised, so the finer net starts out computing exactly what the coarser one did.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from fcnseg.checkpoint import is_checkpoint
from fcnseg.data.by_name import open_dataset
from fcnseg.data.class_weights import median_frequency_weights
from fcnseg.data.common import DatasetError, SegmentationDataset
from fcnseg.data.transforms import (
    CaffeMeanSubtract,
    ColorJitter,
    ConcatNormalize,
    CutMix,
    ImageNetNormalize,
    Normalize,
    Normalizer,
    PasteClasses,
    PerImageNormalize,
    RandomHorizontalFlip,
    RandomScaleCrop,
    Resize,
)
from fcnseg.errors import InputNotFoundError
from fcnseg.models import get_builder, list_models
from fcnseg.models.matmul_conv import matmul_convolutions
from fcnseg.models.surgery import TransplantError, state_dict_in, transplant_vgg16
from fcnseg.train.recipe import Recipe, RecipeError
from fcnseg.weights_io import WeightsFileError, read_weights

logger = logging.getLogger(__name__)

# "scale" preprocessing: raw 0..255 to about -2..2 without dataset statistics.
SCALE_MEAN, SCALE_STD = 0.5, 0.25


# --------------------------------------------------------------------------- data


def open_splits(recipe: Recipe) -> tuple[SegmentationDataset, SegmentationDataset | None]:
    """The train split and the validation split (``None`` when ``val_split`` is "")."""
    train = open_dataset(recipe.dataset, recipe.root, recipe.train_split, **recipe.options)
    if not recipe.val_split:
        return train, None
    name = recipe.val_dataset or recipe.dataset
    options = recipe.val_options if recipe.val_dataset else recipe.options
    val = open_dataset(name, recipe.val_root or recipe.root, recipe.val_split, **options)
    if val.classes != train.classes or val.ignore_index != train.ignore_index:
        raise DatasetError(
            f"validation data ({name}, {val.num_classes} classes) does not share the train "
            f"data's classes ({recipe.dataset}, {train.num_classes} classes)"
        )
    return train, val


def make_normalizer(kind: str, channels: int, mean: list[float] | None = None) -> Normalizer:
    """The preprocessing named by a recipe's ``preprocessing``, for ``channels`` input channels.

    ``mean``: for "caffe", the BGR mean then one mean per extra channel (``[]``: the ILSVRC BGR
    mean, extra channels unchanged), e.g. NYUDv2's own means; for "mean", one value per channel
    subtracted in the channels' stored order (HHA, which is not a colour image).
    """
    mean = list(mean or [])
    if kind == "caffe":
        if not mean:
            return CaffeMeanSubtract()
        if len(mean) != 3 and len(mean) != channels:
            raise RecipeError(
                f"recipe: 'mean' has {len(mean)} values; the input has {channels} channels "
                "(give 3 BGR values, or one per channel)"
            )
        return CaffeMeanSubtract(mean[:3], mean[3:] or None)
    if kind == "mean":
        if len(mean) != channels:
            raise RecipeError(
                f"recipe: 'mean' has {len(mean)} values; the input has {channels} channels"
            )
        return Normalize(mean)
    if kind == "imagenet":
        return ImageNetNormalize()
    if kind == "per_image":
        return PerImageNormalize()
    if kind == "imagenet+per_image":  # the net reads both: 2 x channels
        return ConcatNormalize([ImageNetNormalize(), PerImageNormalize()])
    if kind == "scale":
        return Normalize((SCALE_MEAN,) * channels, (SCALE_STD,) * channels, scale=1 / 255)
    raise ValueError(f"unknown preprocessing {kind!r}")


def paste_class_ids(names: Sequence[str], class_names: Sequence[str]) -> list[int]:
    """The class indices of a recipe's ``paste_classes``, each a name of the train split's."""
    unknown = [name for name in names if name not in class_names]
    if unknown:
        raise RecipeError(
            f"recipe: key 'paste_classes' names {', '.join(map(repr, unknown))}, not classes "
            f"of the train split; its classes: {', '.join(class_names)}"
        )
    return [list(class_names).index(name) for name in names]


class TrainTransform:
    """Augment and preprocess with draws from the given generator: copy-paste of the recipe's
    ``paste_classes`` from another frame of ``donors`` (the raw train split; ``class_names``
    its classes), CutMix (a box of another frame of ``donors``), colour jitter, hue and gamma
    (on the raw image, when the recipe asks for them), preprocessing, fixed resize, random
    scale and crop (padding the label with ``ignore_index`` and the image with 0, the mean
    after preprocessing), left-right flip."""

    def __init__(
        self,
        recipe: Recipe,
        normalizer: Normalizer,
        ignore_index: int,
        donors: Sequence[tuple[Tensor, Tensor]] | None = None,
        class_names: Sequence[str] = (),
    ) -> None:
        self.paste = None
        if recipe.paste_classes:
            if donors is None:
                raise RecipeError("recipe: key 'paste_classes' needs the train split to paste from")
            ids = paste_class_ids(recipe.paste_classes, class_names)
            self.paste = (donors, ids, recipe.paste_probability)
        self.cutmix = None
        if recipe.cutmix_probability > 0:
            if donors is None:
                raise RecipeError(
                    "recipe: key 'cutmix_probability' needs the train split to mix from"
                )
            self.cutmix = (donors, recipe.cutmix_probability)
        self.normalizer = normalizer
        self.jitter = (recipe.brightness, recipe.contrast, recipe.saturation)
        self.hue, self.gamma = recipe.hue, recipe.gamma
        self.resize = Resize(recipe.resize) if recipe.resize != 1 else None
        self.crop_size = tuple(recipe.crop_size)
        self.crop_max_class_share = recipe.crop_max_class_share
        self.scale_range = tuple(recipe.scale_range) or (1.0, 1.0)
        self.flip = recipe.flip
        self.ignore_index = ignore_index

    def __call__(
        self, image: Tensor, label: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        if self.paste is not None:
            image, label = PasteClasses(*self.paste, generator=generator)(image, label)
        if self.cutmix is not None:
            image, label = CutMix(*self.cutmix, generator=generator)(image, label)
        if any(self.jitter) or self.hue or self.gamma:
            jitter = ColorJitter(*self.jitter, generator=generator, hue=self.hue, gamma=self.gamma)
            image, label = jitter(image, label)
        image, label = self.normalizer(image, label)
        if self.resize is not None:
            image, label = self.resize(image, label)
        if self.crop_size:
            crop = RandomScaleCrop(
                self.crop_size,
                self.scale_range,
                self.ignore_index,
                0.0,
                generator=generator,
                max_class_share=self.crop_max_class_share,
            )
            image, label = crop(image, label)
        if self.flip:
            image, label = RandomHorizontalFlip(0.5, generator=generator)(image, label)
        return image, label


def class_weights(dataset: SegmentationDataset, kind: str, num_workers: int = 0) -> Tensor:
    """A recipe's ``class_weights`` (float32, one per class) over the split's raw labels:
    median-frequency weights, or (``sqrt_median_frequency``) their square roots, which halve
    the spread between common and rare classes (full weights make a net over-predict rare
    classes: recall up, IU down on new scenes)."""
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers)
    weights = median_frequency_weights(
        (label for _, label in loader), dataset.num_classes, dataset.ignore_index
    )
    if kind == "sqrt_median_frequency":
        return weights.sqrt()
    if kind != "median_frequency":
        raise ValueError(f"no class weights named {kind!r}")
    return weights


# --------------------------------------------------------------------------- net


def make_model(
    recipe: Recipe, num_classes: int, in_channels: int, num_geometric: int | None = None
) -> nn.Module:
    """The recipe's net: its config's fields from the recipe's fields of the same name.

    A net setting the recipe sets away from its default that the net's config lacks (``dropout``
    for a ResNet) is an error rather than silently dropped. ``net_options`` sets further config
    fields (e.g. ``branch`` of ``fcn_latefusion``); ``num_geometric`` is the geometric head's
    class count of a two-headed net (SIFT Flow).
    """
    builder = get_builder(recipe.net)
    accepted = [f.name for f in dataclasses.fields(builder.config_class)]
    given = {"num_classes": num_classes, "in_channels": in_channels}
    defaults = Recipe()
    for name in net_settings():
        value = getattr(recipe, name)
        if name in accepted:
            given[name] = value
        elif value != getattr(defaults, name):
            raise RecipeError(
                f"recipe: net {recipe.net!r} has no '{name}' setting; leave it at its default "
                f"({getattr(defaults, name)!r}). It takes: {', '.join(accepted)}"
            )
    if num_geometric is not None and "num_geometric" in accepted:
        given["num_geometric"] = num_geometric
    for name, value in recipe.net_options.items():
        if name not in accepted or name in given:
            own = [f for f in accepted if f not in given]
            raise RecipeError(
                f"recipe: net_options.{name}: net {recipe.net!r} takes no such option here; "
                f"its own options: {', '.join(own) or 'none'}"
            )
        given[name] = value
    try:
        return builder(**given)
    except ValueError as error:
        raise RecipeError(f"recipe: net {recipe.net!r}: {error}") from error


def training_layout(net: nn.Module, recipe: Recipe) -> nn.Module:
    """``net`` (in place, on its device) in the memory layout and with the layers a recipe
    trains it with: channels-last tensors (``channels_last``) and its huge-weight convolutions
    as matrix multiplies (``matmul_convolutions``). Neither changes a weight's name or value."""
    if recipe.channels_last:
        net.to(memory_format=torch.channels_last)
    if recipe.matmul_convolutions:
        matmul_convolutions(net)
    return net


def net_settings() -> tuple[str, ...]:
    """The recipe fields that are net settings: fields of some net's config (``width``,
    ``geometry``, ...), bar the two the data decide (``num_classes``, ``in_channels``)."""
    config_fields = {
        f.name for name in list_models() for f in dataclasses.fields(get_builder(name).config_class)
    }
    config_fields -= {"num_classes", "in_channels"}
    return tuple(f.name for f in dataclasses.fields(Recipe) if f.name in config_fields)


@dataclass
class InitReport:
    """What ``init`` filled: ``copied`` names, ``mismatched`` ``(name, source shape, net
    shape)``, ``untouched`` (net entries left as built), ``unused`` (source entries)."""

    kind: str = "none"  # none | vgg16 | checkpoint | imagenet | weights (registry) | resume
    source: str = ""
    copied: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, list[int], list[int]]] = field(default_factory=list)
    untouched: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.kind == "none":
            return "init: none (random weights, zero score layers)"
        if self.kind == "resume":
            return f"init: resumed from {self.source}"
        text = f"init: {self.kind} {self.source}: {len(self.copied)} tensors copied"
        if self.mismatched:
            text += f"; shape differs for {', '.join(name for name, _, _ in self.mismatched)}"
        if self.untouched:
            text += f"; kept as built: {', '.join(self.untouched)}"
        if self.unused:
            text += f"; unused from source: {', '.join(self.unused)}"
        return text


@torch.no_grad()
def copy_matching(model: nn.Module, state: dict[str, Tensor], source: str = "") -> InitReport:
    """Copy every entry of ``state`` whose name and shape match ``model``'s state dict."""
    own = model.state_dict()
    report = InitReport("checkpoint", source)
    for name, value in state.items():
        if name not in own:
            report.unused.append(name)
        elif own[name].shape != value.shape:
            report.mismatched.append((name, list(value.shape), list(own[name].shape)))
        else:
            own[name].copy_(value)
            report.copied.append(name)
    report.untouched = [name for name in own if name not in state]
    return report


def initialize(
    model: nn.Module,
    init: str,
    preprocessing: str | None = None,
    extra_channels: str = "none",
    branches: dict[str, str] | None = None,
) -> InitReport:
    """Apply a recipe's ``init``: "none", a VGG16 state-dict file, an fcnseg checkpoint, or
    "imagenet" / a registry name (:mod:`fcnseg.hub`: downloaded once and cached). "imagenet"
    picks the ImageNet classifier of the net's backbone that expects ``preprocessing``.

    ``extra_channels`` ("mean" or "zero") starts conv1_1's filters of input channels beyond
    RGB from a VGG16 (early fusion); ``branches`` initialise submodules on their own after
    ``init``, e.g. a late-fusion net's ``{"rgb": colour run, "hha": HHA run}``.
    """
    report = _initialize(model, init, preprocessing, extra_channels)
    for name, source in (branches or {}).items():
        branch = getattr(model, name, None)
        if not isinstance(branch, nn.Module):
            children = ", ".join(n for n, _ in model.named_children())
            raise RecipeError(
                f"recipe: init_branches.{name}: the net has no branch {name!r} "
                f"(its parts: {children})"
            )
        part = _initialize(branch, source, preprocessing, extra_channels)
        report.kind = "branches" if report.kind == "none" else report.kind
        report.source = ", ".join(filter(None, [report.source, f"{name}={source}"]))
        report.copied += [f"{name}.{key}" for key in part.copied]
        report.mismatched += [(f"{name}.{k}", a, b) for k, a, b in part.mismatched]
        report.unused += [f"{name}.{key}" for key in part.unused]
    if branches:
        filled = set(report.copied)
        report.untouched = [name for name in model.state_dict() if name not in filled]
    return report


def _initialize(
    model: nn.Module, init: str, preprocessing: str | None, extra_channels: str
) -> InitReport:
    if init == "none":
        return InitReport()
    path = Path(init)
    extra = None if extra_channels == "none" else extra_channels
    if not path.is_file():
        from fcnseg.hub import registry
        from fcnseg.hub.weights import IMAGENET, initialize_from

        if init == IMAGENET or init in registry.names():
            # "mean" preprocessing (raw 0..255 minus a mean, as HHA) is Caffe's convention
            wanted = "caffe" if preprocessing == "mean" else preprocessing
            kind, source, copied = initialize_from(model, init, wanted, extra)
            untouched = [name for name in model.state_dict() if name not in copied]
            return InitReport(kind, source, copied, untouched=untouched)
    if not path.is_file():
        raise InputNotFoundError(f"init weights file {path} does not exist")
    try:
        contents = read_weights(path, what="init weights")  # read once, whatever it holds
    except WeightsFileError as error:
        raise TransplantError(str(error)) from error
    if is_checkpoint(contents):
        report = copy_matching(model, contents["state_dict"], str(path))
        if not report.copied:
            arch = getattr(model, "arch", type(model).__name__)
            raise TransplantError(f"init checkpoint {path} shares no parameter with {arch}")
        return report
    copied = transplant_vgg16(model, state_dict_in(contents, path), extra)
    untouched = [name for name in model.state_dict() if name not in copied]
    return InitReport("vgg16", str(path), copied, untouched=untouched)


# --------------------------------------------------------------------------- optimisation


def make_optimizer(recipe: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    """SGD or AdamW over the trainable parameters in two groups: weights, and 1-D parameters
    (biases, norms) with ``bias_lr_mult`` and, unless ``bias_decay``, no weight decay (as the
    reference's ``lr_mult: 2, decay_mult: 0`` on biases). Each group keeps its ``lr_mult``."""
    weights = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    biases = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": weights, "lr_mult": 1.0, "weight_decay": recipe.weight_decay},
        {
            "params": biases,
            "lr_mult": recipe.bias_lr_mult,
            "weight_decay": recipe.weight_decay if recipe.bias_decay else 0.0,
        },
    ]
    groups = [g for g in groups if g["params"]]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum)
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=(recipe.momentum, 0.999))


ONECYCLE_DIV = 25.0  # onecycle starts at lr / 25 (torch's OneCycleLR default) ...
ONECYCLE_FINAL_DIV = 1e4  # ... and ends at lr / 25 / 1e4


def training_phases(recipe: Recipe, total: int) -> list[tuple[int, int, Recipe]]:
    """The run's steps ``0 .. total - 1`` as ``(first, stop, recipe)`` phases, each augmented by
    its recipe's crops and scales: with ``early_fraction``, the first ``round(early_fraction *
    total)`` steps take ``early_crop_size`` crops at ``early_scale`` times ``scale_range``
    (fewer pixels a step while the net learns the coarse layout), the rest the recipe's own."""
    boundary = round(recipe.early_fraction * total)
    if boundary <= 0:
        return [(0, total, recipe)]
    early = dataclasses.replace(
        recipe,
        crop_size=recipe.early_crop_size or recipe.crop_size,
        scale_range=[s * recipe.early_scale for s in recipe.scale_range or (1.0, 1.0)],
    )
    return [(0, boundary, early), (boundary, total, recipe)]


def lr_factor(recipe: Recipe, iteration: int, total: int) -> float:
    """The schedule's multiplier of ``lr`` at 0-based ``iteration`` of ``total``: a pure
    function, so a resumed run needs no scheduler state."""
    if recipe.schedule == "constant":
        return 1.0
    if recipe.schedule == "poly":
        return (1 - iteration / total) ** recipe.poly_power
    if recipe.schedule == "step":
        return recipe.step_gamma ** (iteration // recipe.step_size)
    # onecycle: cosine from 1/25 up to 1 over pct_start of the run, then cosine down to 1/25e4.
    warm = max(1.0, recipe.pct_start * total - 1)
    start, final = 1 / ONECYCLE_DIV, 1 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)
    if iteration <= warm:
        low, high, t = start, 1.0, iteration / warm
    else:
        low, high, t = final, 1.0, 1 - (iteration - warm) / max(1.0, total - 1 - warm)
    return low + (high - low) * (1 - math.cos(math.pi * min(max(t, 0.0), 1.0))) / 2
