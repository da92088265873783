"""Convolutionalization (section 3.1) and weight transplants.

A classifier's fully connected layers are convolutions whose kernels cover their whole input:
VGG16's fc6 (4096 x 25088) is a 7x7 convolution over the 512-channel pool5 map, fc7 and fc8
are 1x1 convolutions. Reshaping the weights turns the classifier into a net that takes any
image of at least 224 x 224 and returns a map of class scores, one cell per 32-pixel step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from fcnseg.errors import FcnsegError
from fcnseg.models.backbones.vgg import FC6_KERNEL, VGG16, VGG16_STAGES
from fcnseg.models.fcn import FCN
from fcnseg.models.fusion import LateFusion
from fcnseg.weights_io import WeightsFileError, read_weights

# Indices of the 13 convolutions in torchvision's ``vgg16().features``.
TORCHVISION_VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
# torchvision's ``classifier`` Linear layers, by reference name.
TORCHVISION_VGG16_FCS = {"fc6": 0, "fc7": 3, "fc8": 6}
VGG16_CONV_NAMES = tuple(
    f"conv{stage}_{index}"
    for stage, (convs, _) in enumerate(VGG16_STAGES, start=1)
    for index in range(1, convs + 1)
)


# How conv1_1 filters for input channels beyond the source's 3 (depth, HHA: early fusion) start:
# "mean" of the RGB filters (the paper's NYUDv2 RGB-D net), or "zero" (RGB output unchanged).
EXTRA_CHANNEL_INITS = ("mean", "zero")


class TransplantError(FcnsegError):
    """Weights that do not fit: the message names the key and both shapes."""


def _take(state: Mapping[str, Tensor], key: str) -> Tensor:
    if key not in state:
        raise TransplantError(f"missing key {key!r} in the VGG16 state dict")
    return state[key]


def from_torchvision_vgg16(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map a torchvision-format VGG16 state dict to reference names, fc layers as kernels.

    Returns ``conv1_1.weight`` ... ``conv5_3.bias``, ``fc6.weight`` (O x C x 7 x 7),
    ``fc7.weight`` and ``fc8.weight`` (O x I x 1 x 1) and their biases. Works for any width.
    """
    out: dict[str, Tensor] = {}
    for name, index in zip(VGG16_CONV_NAMES, TORCHVISION_VGG16_CONVS):
        out[f"{name}.weight"] = _take(state, f"features.{index}.weight")
        out[f"{name}.bias"] = _take(state, f"features.{index}.bias")
    pool5_channels = out["conv5_3.weight"].shape[0]
    in_channels = pool5_channels
    for name, index in TORCHVISION_VGG16_FCS.items():
        key = f"classifier.{index}.weight"
        weight = _take(state, key)
        kernel = FC6_KERNEL if name == "fc6" else 1
        if weight.ndim != 2 or weight.shape[1] != in_channels * kernel * kernel:
            raise TransplantError(
                f"{key} has shape {tuple(weight.shape)}; expected (out, {in_channels * kernel**2})"
                f" to become a {kernel}x{kernel} convolution over {in_channels} channels"
            )
        out[f"{name}.weight"] = weight.reshape(weight.shape[0], in_channels, kernel, kernel)
        out[f"{name}.bias"] = _take(state, f"classifier.{index}.bias")
        in_channels = weight.shape[0]
    return out


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """A state dict from a local file (:func:`fcnseg.weights_io.read_weights`)."""
    try:
        contents = read_weights(path, what="weights file")
    except WeightsFileError as error:
        raise TransplantError(str(error)) from error
    return state_dict_in(contents, path)


def state_dict_in(contents: object, path: str | os.PathLike) -> dict[str, Tensor]:
    """The state dict in a weight file's ``contents``: the file's whole contents, or a dict
    under ``state_dict`` or ``model``. ``path`` names the file in messages."""
    for key in ("state_dict", "model"):
        if isinstance(contents, dict) and isinstance(contents.get(key), dict):
            contents = contents[key]
    if not isinstance(contents, dict) or not all(isinstance(v, Tensor) for v in contents.values()):
        raise TransplantError(f"{path} does not hold a state dict of tensors")
    return contents


def _copy_into(module: nn.Module, weights: Mapping[str, Tensor], prefix: str = "") -> list[str]:
    own = module.state_dict()
    filled = []
    for key, value in weights.items():
        if key not in own:
            continue
        if own[key].shape != value.shape:
            raise TransplantError(
                f"{prefix}{key}: source shape {tuple(value.shape)} != target shape"
                f" {tuple(own[key].shape)}"
            )
        own[key].copy_(value)
        filled.append(prefix + key)
    return filled


def _check_extra_channels(extra_channels: str) -> None:
    if extra_channels not in EXTRA_CHANNEL_INITS:
        raise ValueError(
            f"extra_channels must be one of {EXTRA_CHANNEL_INITS} or None, got {extra_channels!r}"
        )


def widen_conv1(weight: Tensor, in_channels: int, extra_channels: str) -> Tensor:
    """conv1_1's ``weight`` (O x C x k x k) grown to ``in_channels`` inputs for early fusion.

    The first C input channels keep their filters; each extra channel gets the mean of them
    over the C inputs ("mean"), or zeros ("zero").
    """
    _check_extra_channels(extra_channels)
    have = weight.shape[1]
    if in_channels < have:
        raise TransplantError(
            f"conv1_1.weight: the source has {have} input channels, the net only {in_channels}"
        )
    extra = in_channels - have
    if extra_channels == "mean":
        grown = weight.mean(dim=1, keepdim=True).expand(-1, extra, -1, -1)  # (O, extra, k, k)
    else:
        grown = weight.new_zeros(weight.shape[0], extra, *weight.shape[2:])
    return torch.cat([weight, grown], dim=1)  # (O, in_channels, k, k)


@torch.no_grad()
def transplant_vgg16(
    model: FCN | LateFusion,
    source: str | os.PathLike | Mapping[str, Tensor],
    extra_channels: str | None = None,
) -> list[str]:
    """Fill an FCN's VGG16 backbone from a torchvision-format VGG16 classifier.

    ``source`` is a state dict or a local file holding one. The score layers are reset to
    zero, as the paper initialises them (section 4.3). Returns the names filled.

    ``extra_channels``: for a net with more input channels than the source (RGB-D early
    fusion, ``in_channels=4``), how to start conv1_1's filters for the extra ones: "mean" of
    the RGB filters (the paper's NYUDv2 net) or "zero"; ``None`` refuses the mismatch.
    A :class:`~fcnseg.models.fusion.LateFusion` net gets the source in each branch.
    """
    if extra_channels is not None:
        _check_extra_channels(extra_channels)
    state = source if isinstance(source, Mapping) else read_state_dict(source)
    if isinstance(model, LateFusion):
        return [
            f"{name}.{key}"
            for name, branch in (("rgb", model.rgb), ("hha", model.hha))
            for key in transplant_vgg16(branch, state, extra_channels)
        ]
    weights = from_torchvision_vgg16(state)
    backbone = model.backbone
    if not isinstance(backbone, VGG16):
        raise TransplantError(f"the model's backbone is {type(backbone).__name__}, not VGG16")
    if hasattr(backbone, "space_to_depth"):
        raise TransplantError(
            f"the net stacks {backbone.space_to_depth.factor} x {backbone.space_to_depth.factor}"
            " pixel blocks as channels before conv1_1 (space_to_depth), which a VGG16"
            " classifier's conv1_1, made for single pixels, does not fit; train it from scratch"
            " (init = 'none') or build it with space_to_depth=1"
        )
    if backbone.fc6.kernel_size != (FC6_KERNEL, FC6_KERNEL):
        side = backbone.fc6.kernel_size[0]
        raise TransplantError(
            f"the net's fc6 is {side} x {side} (fc6_kernel={side}), the classifier's"
            f" {FC6_KERNEL} x {FC6_KERNEL}; build it with fc6_kernel={FC6_KERNEL} to take the"
            " classifier's weights, or train it from scratch (init = 'none')"
        )
    own = backbone.state_dict()
    conv1 = weights["conv1_1.weight"]
    net_channels = own["conv1_1.weight"].shape[1] if "conv1_1.weight" in own else conv1.shape[1]
    if extra_channels is not None and net_channels != conv1.shape[1]:
        weights["conv1_1.weight"] = widen_conv1(conv1, net_channels, extra_channels)
    elif extra_channels is None and net_channels > conv1.shape[1]:
        raise TransplantError(
            f"conv1_1.weight: the source has {conv1.shape[1]} input channels, the net"
            f" {net_channels}; pass extra_channels='mean' (early fusion) or 'zero'"
        )
    missing = [k for k in weights if not k.startswith("fc8.") and k not in own]
    if missing:
        raise TransplantError(
            f"the backbone has no parameter {missing[0]!r} (a batch-norm net has no conv bias);"
            " transplant into a net built with batch_norm=False"
        )
    filled = _copy_into(backbone, weights, prefix="backbone.")
    for name, layer in model.named_children():
        if name.startswith("score_"):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
    return filled


class ConvolutionalClassifier(nn.Module):
    """A VGG16 classifier made fully convolutional: ``N x 3 x H x W -> N x K x h x w``.

    With ``conv1_padding=1`` (the classifier's own), a 224 x 224 image gives one cell equal to
    the classifier's logits; a larger image gives a cell per 32-pixel step.
    """

    def __init__(self, backbone: VGG16, num_outputs: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.fc8 = nn.Conv2d(backbone.tap("fc7").channels, num_outputs, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc8(self.backbone(x)["fc7"])


def convolutionalize_vgg16(
    source: str | os.PathLike | Mapping[str, Tensor], conv1_padding: int = 1, padding: int = 1
) -> ConvolutionalClassifier:
    """The convolutional form of a torchvision-format VGG16 classifier (fc8 included)."""
    state = source if isinstance(source, Mapping) else read_state_dict(source)
    weights = from_torchvision_vgg16(state)
    width = weights["conv1_1.weight"].shape[0] / VGG16_STAGES[0][1]
    backbone = VGG16(
        in_channels=weights["conv1_1.weight"].shape[1],
        width=width,
        conv1_padding=conv1_padding,
        padding=padding,
        fc_channels=weights["fc6.weight"].shape[0],
    )
    classifier = ConvolutionalClassifier(backbone, weights["fc8.weight"].shape[0])
    _copy_into(classifier.backbone, weights)
    classifier.fc8.weight.data.copy_(weights["fc8.weight"])
    classifier.fc8.bias.data.copy_(weights["fc8.bias"])
    return classifier.eval()
