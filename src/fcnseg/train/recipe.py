"""Training recipes: every choice of a run in one validated dataclass, read from TOML.

A recipe file is flat TOML whose keys are the fields of :class:`Recipe` (``recipes/*.toml``);
command-line flags override single fields. Unknown keys, wrong types and values outside a
field's range raise :class:`RecipeError` naming the key, the value and what is valid. Paths are
taken as given (relative ones against the working folder of the run). "Unset" is spelled ``""``
or ``[]`` so that a resolved recipe written back by :func:`dumps` is a recipe file again.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package
    import tomli as tomllib

from fcnseg.data.by_name import DATASET_NAMES
from fcnseg.errors import FcnsegError
from fcnseg.inference.crf import CRF
from fcnseg.models import GEOMETRIES, list_models
from fcnseg.runtime import DEVICES, PRECISION_ALIASES, PRECISIONS
from fcnseg.train.losses import NORMALIZATIONS

NETS = tuple(list_models())
PREPROCESSING = ("caffe", "imagenet", "scale", "mean", "per_image", "imagenet+per_image")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "poly", "onecycle", "step")
CLASS_WEIGHTS = ("none", "median_frequency", "sqrt_median_frequency")
AMP = tuple(PRECISIONS)  # fp32 | bf16 | fp16; "none" is read as fp32 (PRECISION_ALIASES)
EXTRA_CHANNELS = ("none", "mean", "zero")
SCORES = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")  # the paper's four metrics
# best.pt is chosen by one validation metric: the (semantic) head's, or the geometric head's
# of a two-headed net (SIFT Flow).
BEST_METRICS = SCORES + tuple(f"geometric_{name}" for name in SCORES)
MAX_SEED = 2**31 - 1

# Fields a resumed run may change: they leave the weights' trajectory alone (``iterations``
# and ``epochs`` lengthen a run; with ``poly`` or ``onecycle`` that reshapes the schedule ahead)
# or steer it from there on (``lr``: the way back from a divergence). A resume logs its changes.
RESUMABLE = frozenset(
    {
        "lr",
        "iterations",
        "epochs",
        "val_every",
        "val_images",
        "checkpoint_every",
        "log_every",
        "out",
        "num_workers",
        "cache_samples",
        "device",
        "root",
        "val_root",
    }
)


class RecipeError(FcnsegError):
    """A recipe that cannot run; the message names the source, the key and the valid values."""


@dataclass
class Recipe:
    # ---- data (readers of fcnseg.data, by name)
    dataset: str = "folder"  # camvid | voc | sbd | nyud | siftflow | context | folder | synthetic
    root: str = ""  # the dataset's folder (required)
    options: dict[str, Any] = field(default_factory=dict)  # reader options: voc {sbd_root}, ...
    train_split: str = "train"  # e.g. train, trainval (SBD), train (CamVid)
    val_split: str = "val"  # "" trains without validation
    val_dataset: str = ""  # reader for validation if not `dataset` (VOC: train sbd, val voc)
    val_root: str = ""  # its folder ("" = `root`)
    val_options: dict[str, Any] = field(default_factory=dict)  # its options (used with val_dataset)
    val_images: int = 0  # validate on the first N images only (0 = all), for quick checks
    # ---- net (fcnseg.models builders)
    net: str = "fcn8s"  # a name of fcnseg.models.list_models(): fcn32s, fcn16s, fcn8s, ...
    width: float = 1.0  # VGG16 channel multiplier (0.25: 16x cheaper)
    batch_norm: bool = False  # BatchNorm after each convolution, for training from scratch
    instance_norm_stages: int = 0  # IBN-Net: conv1..conv<n> BatchNorms half by image statistics
    mixstyle_stages: int = 0  # MixStyle: conv1..conv<n> features re-styled in training
    space_to_depth: int = 1  # VGG16 nets: r x r pixel blocks as channels before conv1_1 (1: none)
    fc6_kernel: int = 7  # VGG16 nets: side of fc6 (7: the classifier's 7 x 7 input; odd)
    global_context: bool = False  # VGG16 nets: scores of fc7's image-wide mean added (ParseNet)
    dropout: float = 0.5  # after fc6 and fc7 (0.5 in the reference)
    learnable_upsampling: bool = False  # learn the bilinear-initialised deconvolutions
    geometry: str = "reference"  # reference (conv1 padded by 100) | fast (unpadded, cheaper)
    net_options: dict[str, Any] = field(default_factory=dict)  # more builder args: {branch}
    init: str = "none"  # none | imagenet | a weights name (fcnseg weights) | a VGG16 or fcnseg file
    init_branches: dict[str, Any] = field(default_factory=dict)  # late fusion: {rgb, hha} inits
    extra_channels: str = "none"  # VGG16 init of >3 input channels (early fusion): mean | zero
    # ---- input
    # per_image: each image's own mean and std; imagenet+per_image: both, as 2 x 3 channels
    preprocessing: str = "caffe"  # caffe | imagenet | scale | mean | per_image | imagenet+per_image
    mean: list[float] = field(default_factory=list)  # caffe: [B,G,R, extra..]; mean: per channel
    resize: float = 1.0  # fixed rescale of train and val images (e.g. 0.5 on a CPU)
    flip: bool = False  # random left-right mirroring
    brightness: float = 0.0  # random brightness factor in [1 - b, 1 + b] (0: none)
    contrast: float = 0.0  # random contrast factor in [1 - c, 1 + c] (0: none)
    saturation: float = 0.0  # random saturation factor in [1 - s, 1 + s] (0: none)
    hue: float = 0.0  # random chroma rotation in [-h, h] turns, luma kept (0: none; at most 0.5)
    gamma: float = 0.0  # random tone curve 255 (x/255)^e, e in [1/(1+g), 1+g] (0: none; at most 3)
    paste_classes: list[str] = field(default_factory=list)  # copy-paste these classes (names)
    paste_probability: float = 0.5  # ... from a random other train frame, this often
    cutmix_probability: float = 0.0  # a box of a random other train frame in its place (CutMix)
    scale_range: list[float] = field(default_factory=list)  # [low, high] random scale; needs crop
    crop_size: list[int] = field(default_factory=list)  # [h, w] (or one int) random crops
    # (MMSegmentation's cat_max_ratio: up to 10 draws, the share of the crop's labelled pixels)
    crop_max_class_share: float = 1.0  # redraw crops with one class over this share (1: never)
    early_fraction: float = 0.0  # an early phase, this share of the steps (0: none), takes ...
    early_crop_size: list[int] = field(default_factory=list)  # ... crops this size ([]: crop_size)
    early_scale: float = 1.0  # ... at scale_range times this (< 1: progressive resizing)
    batch_size: int = 1  # images per step and process (1: whole images, as in the paper)
    batch_by_size: bool = False  # one image size per batch: mixed-size whole images, no padding
    # ---- optimisation
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 1e-4  # base learning rate (~1e-10 with loss = "sum" on VOC-sized images)
    momentum: float = 0.9  # SGD momentum (0.99 in the reference), AdamW beta1
    weight_decay: float = 5e-4  # L2 (SGD) or decoupled (AdamW) weight decay
    bias_lr_mult: float = 1.0  # lr multiplier of 1-D parameters (biases, norms); reference: 2
    bias_decay: bool = True  # weight decay on 1-D parameters (reference: none)
    schedule: str = "constant"  # constant | poly | onecycle | step
    poly_power: float = 0.9  # poly: lr * (1 - t/T) ** power
    pct_start: float = 0.15  # onecycle: fraction of the run warming up (cosine)
    step_size: int = 0  # step: multiply the lr by step_gamma every step_size iterations
    step_gamma: float = 0.1  # step: the factor
    loss: str = "mean"  # mean over labelled pixels | sum (the reference's unnormalised loss)
    class_weights: str = "none"  # none | median_frequency | sqrt_median_frequency (train split)
    lovasz_weight: float = 0.0  # add this times the Lovasz-softmax loss (a mean-IU surrogate)
    jaccard_weight: float = 0.0  # add this times 1 - soft IU (a cheaper mean-IU surrogate)
    ohem_fraction: float = 0.0  # OHEM: cross-entropy of this share of pixels, the hardest (0: all)
    label_smoothing: float = 0.0  # targets 1 - e on the label, e / K on every class (0: none)
    coarse_loss_weight: float = 0.0  # deep supervision: add this times score_fr's own loss
    loss_sample_rate: float = 1.0  # keep each pixel's loss with this probability (1: all; 3.4)
    loss_sample_rescale: bool = True  # sampled "sum" loss divided by the rate (unbiased)
    ema_decay: float = 0.0  # d: validate and save the moving average of the weights (0: off)
    iterations: int = 0  # optimiser steps; give this or `epochs`
    epochs: int = 0  # passes over the train split (sharded across processes)
    # ---- scoring (recorded in the checkpoint: fcnseg eval, predict and segment apply it)
    test_flip: bool = False  # test-time augmentation: also score the mirrored image
    test_scales: list[float] = field(default_factory=list)  # and these scales ([]: [1.0])
    test_crf: bool = False  # then a CRF with the default parameters (fcnseg.inference.crf)
    # ---- bookkeeping
    val_every: int = 0  # validate every N iterations (0: only at the end)
    best_metric: str = "mean_iu"  # picks best.pt: a metric, or geometric_<metric> (two heads)
    checkpoint_every: int = 0  # write last.pt every N iterations (0: at validations and the end)
    log_every: int = 20  # one metrics-log line per N iterations, with their mean loss
    seed: int = 0  # weights, data order and augmentation are functions of it
    out: str = ""  # output folder (required)
    num_workers: int = 0  # DataLoader worker processes
    cache_samples: bool = False  # keep decoded train pairs in memory: each file read once
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 CUDA only); "none": deprecated fp32
    channels_last: bool = False  # NHWC memory format (faster convolutions: recent GPUs, AVX-512)
    # (fc6 from width 0.25 up, fc7 at full width: fcnseg.models.matmul_conv; the same sums in
    # another order, on this CPU fc6's forward + backward in about half oneDNN's time)
    matmul_convolutions: bool = False  # huge-weight convolutions as one matrix multiply each

    def __post_init__(self) -> None:
        _validate(self, "recipe")

    def test_time_augmentation(self) -> dict[str, Any] | None:
        """``test_flip``, ``test_scales`` and ``test_crf`` as checkpoint metadata records them
        (``{"flip": bool, "scales": [...]}``, with ``"crf"``: the default CRF's parameters);
        None when they ask for one view only and no CRF."""
        scales = self.test_scales or [1.0]
        if not self.test_flip and scales == [1.0] and not self.test_crf:
            return None
        spec: dict[str, Any] = {"flip": self.test_flip, "scales": scales}
        if self.test_crf:
            spec["crf"] = CRF().to_dict()
        return spec

    def replace(self, source: str = "overrides", **changes: Any) -> Recipe:
        """A copy with ``changes`` (typed values or command-line strings), validated."""
        merged = dataclasses.asdict(self)
        for key, value in changes.items():
            merged[key] = parse_value(key, value, source) if isinstance(value, str) else value
        return from_dict(merged, source)

    def check_runnable(self) -> None:
        """Raise unless the fields a run needs are set: ``root``, ``out`` and its length."""
        needed = ("out",) if self.dataset == "synthetic" else ("root", "out")  # made in code
        missing = [key for key in needed if not getattr(self, key)]
        if missing:
            flags = ", ".join(f"'{k}' (--{k})" for k in missing)
            raise RecipeError(f"recipe: set {flags}")
        if (self.iterations > 0) == (self.epochs > 0):
            raise RecipeError(
                f"recipe: give exactly one of 'iterations' and 'epochs' (> 0), got "
                f"iterations={self.iterations}, epochs={self.epochs}"
            )

    def differences(self, other: Recipe) -> list[str]:
        """Names of the fields whose values differ."""
        return [f.name for f in FIELDS if getattr(self, f.name) != getattr(other, f.name)]


FIELDS = dataclasses.fields(Recipe)


def resumed_changes(stored: Recipe, given: Recipe) -> dict[str, list[Any]]:
    """``{field: [stored value, new value]}`` for the resumable settings a resume changes
    (the folder names ``out``, ``root`` and ``val_root`` aside: moving a run is no change)."""
    moved = {"out", "root", "val_root"}
    return {
        name: [getattr(stored, name), getattr(given, name)]
        for name in stored.differences(given)
        if name in RESUMABLE and name not in moved
    }


FIELD_TYPES: dict[str, Any] = typing.get_type_hints(Recipe)
CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": DATASET_NAMES,
    "net": NETS,
    "geometry": GEOMETRIES,
    "preprocessing": PREPROCESSING,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "loss": NORMALIZATIONS,
    "class_weights": CLASS_WEIGHTS,
    "device": DEVICES,
    "amp": AMP,
    "extra_channels": EXTRA_CHANNELS,
    "best_metric": BEST_METRICS,
}


def field_help() -> dict[str, str]:
    """Each field's comment in this file, for ``--help`` (empty when the source is missing)."""
    try:
        source = inspect.getsource(Recipe)
    except (OSError, TypeError):
        return {}
    return dict(re.findall(r"^    (\w+): [^#\n]*#\s*(.+)$", source, re.MULTILINE))


def kind_of(name: str) -> str:
    """The value kind of a field: ``str``, ``int``, ``float``, ``bool``, ``floats``, ``ints``,
    ``strs``, ``table``."""
    hint = FIELD_TYPES[name]
    if hint in (str, int, float, bool):
        return hint.__name__
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return {(float,): "floats", (str,): "strs"}.get(args, "ints")
    return "table"


def _fail(source: str, key: str, message: str, value: Any) -> RecipeError:
    return RecipeError(f"{source}: key '{key}' {message}, got {value!r}")


def _check_type(key: str, value: Any, source: str) -> Any:
    kind = kind_of(key)
    if kind == "bool":
        if not isinstance(value, bool):
            raise _fail(source, key, "must be true or false", value)
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(source, key, "must be an integer", value)
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(source, key, "must be a number", value)
        if not math.isfinite(value):
            raise _fail(source, key, "must be finite", value)
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise _fail(source, key, "must be a string", value)
        return value
    if kind == "strs":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise _fail(source, key, "must be a list of strings ([] for none)", value)
        return list(value)
    if kind in ("floats", "ints"):
        sizes = key in ("crop_size", "early_crop_size")
        if sizes and isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if sizes and isinstance(value, list | tuple) and len(value) == 1:
            value = [value[0], value[0]]  # one int: a square
        if not isinstance(value, list | tuple):
            raise _fail(source, key, "must be a list ([] for none)", value)
        for item in value:
            ok = isinstance(item, int) and not isinstance(item, bool)
            if kind == "floats":
                ok = ok or isinstance(item, float) and math.isfinite(item)
            if not ok:
                raise _fail(source, key, f"must hold {kind[:-1]}s", value)
        return [float(v) for v in value] if kind == "floats" else list(value)
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _fail(source, key, "must be a table of options", value)
    for option, item in value.items():
        if not isinstance(item, str | int | float | bool):
            raise _fail(source, f"{key}.{option}", "must be a string, number or boolean", item)
    return dict(value)


def _validate(recipe: Recipe, source: str) -> None:
    """Check and normalise every field in place; raise :class:`RecipeError` on the first bad one."""
    for f in FIELDS:
        setattr(recipe, f.name, _check_type(f.name, getattr(recipe, f.name), source))
    r = recipe
    r.amp = PRECISION_ALIASES.get(r.amp, r.amp)  # the old spelling, read as its new name
    for key, valid in CHOICES.items():
        if getattr(r, key) not in valid:
            raise _fail(source, key, f"must be one of {', '.join(valid)}", getattr(r, key))
    if r.val_dataset and r.val_dataset not in DATASET_NAMES:
        raise _fail(source, "val_dataset", f"must be '' or one of {DATASET_NAMES}", r.val_dataset)
    if r.val_options and not r.val_dataset:
        raise _fail(source, "val_options", "needs val_dataset (else options apply)", r.val_options)

    def need(key: str, ok: bool, what: str) -> None:
        if not ok:
            raise _fail(source, key, what, getattr(r, key))

    need("width", r.width > 0, "must be > 0")
    need("dropout", 0 <= r.dropout < 1, "must be in [0, 1)")
    need("resize", r.resize > 0, "must be > 0")
    for key in ("brightness", "contrast", "saturation"):
        need(key, 0 <= getattr(r, key) < 1, "must be in [0, 1)")
    need("hue", 0 <= r.hue <= 0.5, "must be in [0, 0.5] (turns of the colour circle)")
    need("gamma", 0 <= r.gamma <= 3, "must be in [0, 3] (exponents 1/(1+gamma)..1+gamma)")
    need("paste_probability", 0 <= r.paste_probability <= 1, "must be in [0, 1]")
    need("cutmix_probability", 0 <= r.cutmix_probability <= 1, "must be in [0, 1]")
    need(
        "crop_max_class_share",
        0 < r.crop_max_class_share <= 1,
        "must be in (0, 1] (1: crops are never redrawn)",
    )
    need(
        "crop_max_class_share", r.crop_max_class_share == 1 or bool(r.crop_size), "needs crop_size"
    )
    need("scale_range", len(r.scale_range) in (0, 2), "must be [] or [low, high]")
    if r.scale_range:
        low, high = r.scale_range
        need("scale_range", 0 < low <= high, "must be [low, high] with 0 < low <= high")
        need("crop_size", bool(r.crop_size), "must be set with scale_range (random scales crop)")
    need("crop_size", len(r.crop_size) in (0, 2), "must be [], one int or [height, width]")
    need("crop_size", all(s >= 1 for s in r.crop_size), "must be >= 1 pixel")
    need("early_fraction", 0 <= r.early_fraction < 1, "must be in [0, 1)")
    need("early_crop_size", len(r.early_crop_size) in (0, 2), "must be [], one int or [h, w]")
    need("early_crop_size", all(s >= 1 for s in r.early_crop_size), "must be >= 1 pixel")
    need("early_scale", r.early_scale > 0, "must be > 0")
    if r.early_fraction:
        need("early_fraction", bool(r.crop_size), "needs crop_size (the phases differ in crops)")
        need(
            "early_fraction",
            bool(r.early_crop_size) or r.early_scale != 1,
            "needs early_crop_size or early_scale (else the early phase is the late one)",
        )
    need("batch_size", r.batch_size >= 1, "must be >= 1")
    caffe_mean = len(r.mean) == 0 or len(r.mean) >= 3
    need("mean", r.preprocessing in ("caffe", "mean") or not r.mean, "needs caffe or mean")
    need("mean", r.preprocessing != "caffe" or caffe_mean, "must be [] or [B, G, R, extra...]")
    need("mean", r.preprocessing != "mean" or bool(r.mean), "must be set for preprocessing mean")
    for branch, path in r.init_branches.items():
        if not isinstance(path, str) or not path:
            raise _fail(source, f"init_branches.{branch}", "must be a weights file", path)
    need("lr", r.lr > 0, "must be > 0")
    need("momentum", 0 <= r.momentum < 1, "must be in [0, 1)")
    need("weight_decay", r.weight_decay >= 0, "must be >= 0")
    need("bias_lr_mult", r.bias_lr_mult >= 0, "must be >= 0")
    need("poly_power", r.poly_power > 0, "must be > 0")
    need("pct_start", 0 < r.pct_start < 1, "must be in (0, 1)")
    need("step_size", r.step_size >= 0, "must be >= 0")
    need("step_size", r.schedule != "step" or r.step_size > 0, "must be > 0 for schedule 'step'")
    need("step_gamma", r.step_gamma > 0, "must be > 0")
    need("loss_sample_rate", 0 < r.loss_sample_rate <= 1, "must be in (0, 1]")
    need("lovasz_weight", r.lovasz_weight >= 0, "must be >= 0")
    need("jaccard_weight", r.jaccard_weight >= 0, "must be >= 0")
    need("ohem_fraction", 0 <= r.ohem_fraction <= 1, "must be in [0, 1] (0: every pixel)")
    need("label_smoothing", 0 <= r.label_smoothing < 1, "must be in [0, 1) (0: none)")
    need("coarse_loss_weight", r.coarse_loss_weight >= 0, "must be >= 0")
    need("ema_decay", 0 <= r.ema_decay < 1, "must be in [0, 1) (0: no average)")
    need("test_scales", all(v > 0 for v in r.test_scales), "must be scales > 0")
    for key in ("iterations", "epochs", "val_every", "val_images", "checkpoint_every"):
        need(key, getattr(r, key) >= 0, "must be >= 0")
    need("log_every", r.log_every >= 1, "must be >= 1")
    need("num_workers", r.num_workers >= 0, "must be >= 0")
    need("seed", 0 <= r.seed <= MAX_SEED, f"must be in 0..{MAX_SEED}")


def from_dict(values: dict[str, Any], source: str = "recipe") -> Recipe:
    """A validated recipe from a mapping of field names; unknown keys raise naming the valid."""
    names = [f.name for f in FIELDS]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise RecipeError(
            f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: "
            f"{', '.join(names)}"
        )
    recipe = Recipe.__new__(Recipe)
    for f in FIELDS:
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        setattr(recipe, f.name, values.get(f.name, default))
    _validate(recipe, source)
    return recipe


def load(path: str | Path) -> Recipe:
    """Read a TOML recipe file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {path} does not exist")
    if path.suffix.lower() != ".toml":
        raise RecipeError(f"recipe file {path}: only TOML recipes (.toml) are read")
    try:
        values = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise RecipeError(f"recipe file {path} is not valid TOML: {error}") from error
    return from_dict(values, source=str(path))


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def parse_value(key: str, text: str, source: str = "command line") -> Any:
    """A field's value from command-line text: ``"1e-3"``, ``"true"``, ``"0.5,2"``, ``"k=v,..."``.

    Lists are comma-separated (``""`` is empty); tables are ``key=value`` pairs, their values
    parsed as TOML scalars where possible (``modality=hha``, ``year=2011``).
    """
    if key not in FIELD_TYPES:
        raise RecipeError(f"{source}: unknown key {key!r}; valid keys: {', '.join(FIELD_TYPES)}")
    kind = kind_of(key)
    text = text.strip()
    try:
        if kind == "str":
            return text
        if kind == "bool":
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError
            return text.lower() in _TRUE
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if kind == "strs":
            return parts
        if kind == "ints":
            return [int(p) for p in parts]
        if kind == "floats":
            return [float(p) for p in parts]
        table = {}
        for part in parts:
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise ValueError
            table[name.strip()] = _scalar(value.strip())
        return table
    except ValueError:
        raise _fail(source, key, f"cannot be read as {kind}", text) from None


def _scalar(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else _toml_value(key)


def dumps(recipe: Recipe) -> str:
    """The recipe as TOML, every field, in declaration order; :func:`load` reads it back."""
    return "".join(f"{f.name} = {_toml_value(getattr(recipe, f.name))}\n" for f in FIELDS)
