"""The nets fcnseg knows by name: one explicit table, read by every part that names a net.

Checkpoints record a net's name (``arch``) and config; recipes, ``fcnseg models``, the Caffe
importer and the benchmarks look names up here. To add a net, write its config and builder
(:mod:`fcnseg.models.config`) and add one line to :data:`MODELS`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from fcnseg.errors import FcnsegError
from fcnseg.models import fcn, fusion, multitask
from fcnseg.models.config import Builder

# name -> builder, in the order ``fcnseg models`` lists them: the paper's VGG16 nets (FCN-4s
# and FCN-2s carry their skips on to pool2 and pool1), the other Table 1 nets, modern
# backbones, then nets of several streams or outputs.
MODELS: dict[str, Builder[Any, Any]] = {
    b.name: b
    for b in (
        fcn.fcn32s,
        fcn.fcn16s,
        fcn.fcn8s,
        fcn.fcn8s_atonce,
        fcn.fcn4s,
        fcn.fcn2s,
        fcn.fcn_alexnet,
        fcn.fcn_googlenet,
        fcn.fcn8s_resnet18,
        fcn.fcn8s_resnet34,
        fcn.fcn8s_resnet50,
        fcn.fcn8s_resnet101,
        fcn.fcn8s_mobilenet_v3_large,
        fusion.fcn_latefusion,
        multitask.fcn32s_two_headed,
        multitask.fcn16s_two_headed,
        multitask.fcn8s_two_headed,
    )
}


class UnknownModelError(FcnsegError):
    """A net name that is not in :data:`MODELS`; the message lists the known ones."""


def list_models() -> list[str]:
    """The names of every net, as ``fcnseg models`` lists them."""
    return list(MODELS)


def get_builder(name: str) -> Builder[Any, Any]:
    """The builder registered as ``name``."""
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown net {name!r}; known: {', '.join(MODELS)}") from None


def create_model(name: str, **settings: Any) -> nn.Module:
    """The net ``name`` built with ``settings`` (its config's fields, e.g. ``num_classes``)."""
    return get_builder(name)(**settings)
