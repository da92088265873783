"""Net settings as typed, frozen configs, and the builders that take them.

Each net family has one frozen dataclass config, a field per setting with a comment. A
builder is the function that turns a config into a net, wrapped by :func:`builder`, which
gives it the config's fields as its keyword signature::

    @builder(VGG16FCNConfig)
    def fcn8s(config: VGG16FCNConfig) -> FCN: ...

    fcn8s(num_classes=11, width=0.25)         # keywords checked against the fields
    fcn8s.from_config(VGG16FCNConfig(num_classes=11))

The net it returns carries ``arch`` (the builder's name) and ``config``; checkpoints store the
config as a plain dict (``dataclasses.asdict``) and rebuild the net from it. Adding a setting
is one edit: a field of the config (then use it in the builder's body).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from torch import nn

C = TypeVar("C", bound="FCNConfig")
M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True)
class FCNConfig:
    """Settings every net has; ResNet and MobileNetV3 FCN-8s take exactly these."""

    num_classes: int = 21  # output channels (PASCAL VOC: 20 classes and background)
    in_channels: int = 3  # input channels (RGB; 4 for RGB-D early fusion)
    width: float = 1.0  # multiplies every hidden layer's channels (1/16 makes tiny test nets)
    learnable_upsampling: bool = False  # learn the bilinear-initialised deconvolutions

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.width <= 0:
            raise ValueError(f"width must be > 0, got {self.width}")


class Builder(Generic[C, M]):
    """A net builder: call it with the config's fields as keywords, or use :meth:`from_config`.

    ``name`` is the arch recorded in checkpoints and listed by
    :func:`fcnseg.models.list_models`; ``config_class`` the dataclass it takes.

    Every builder also takes, as torchvision's do, ``weights`` (a whole trained net: a
    registry name such as ``"voc-fcn8s"`` or a file) and ``weights_backbone`` (``"imagenet"``,
    a registry name or a file): see :func:`fcnseg.hub.apply_weights`. They are not settings of
    the net, so they are not fields of its config.
    """

    def __init__(self, config_class: type[C], build: Callable[[C], M]) -> None:
        self.config_class = config_class
        self.build = build
        self.name = build.__name__
        self.__name__ = build.__name__
        self.__qualname__ = build.__qualname__
        self.__module__ = build.__module__
        self.__doc__ = build.__doc__
        self.__signature__ = config_signature(config_class, inspect.signature(build))

    def __call__(
        self,
        *args: Any,
        weights: str | os.PathLike | None = None,
        weights_backbone: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> M:
        try:
            bound = self.__signature__.bind(*args, **kwargs)
        except TypeError as error:
            takes = ", ".join([*self.__signature__.parameters, "weights", "weights_backbone"])
            raise TypeError(f"{self.name}(): {error}; it takes: {takes}") from None
        model = self.from_config(self.config_class(**bound.arguments))
        if weights is None and weights_backbone is None:
            return model
        from fcnseg.hub import apply_weights  # the hub builds on the models, not the reverse

        return apply_weights(model, weights=weights, weights_backbone=weights_backbone)

    def from_config(self, config: C) -> M:
        """The net of ``config``, with ``arch`` and ``config`` recorded on it."""
        if type(config) is not self.config_class:  # a subclass has fields this one ignores
            raise TypeError(
                f"{self.name} takes a {self.config_class.__name__}, got {type(config).__name__}"
            )
        model = self.build(config)
        model.arch = self.name
        model.config = config
        return model

    def from_settings(self, settings: Mapping[str, Any]) -> M:
        """The net of a config stored as a dict (a checkpoint's ``settings``)."""
        return self(**settings)

    def __repr__(self) -> str:
        return f"<builder {self.name}{self.__signature__}>"


def config_signature(config_class: type, returns: inspect.Signature) -> inspect.Signature:
    """The keyword signature of a builder taking ``config_class``: ``num_classes`` may also
    come first by position, every other field is keyword-only."""
    hints = typing.get_type_hints(config_class)
    parameters = [
        inspect.Parameter(
            field.name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD
            if index == 0
            else inspect.Parameter.KEYWORD_ONLY,
            default=field.default,
            annotation=hints[field.name],
        )
        for index, field in enumerate(dataclasses.fields(config_class))
    ]
    return inspect.Signature(parameters, return_annotation=returns.return_annotation)


def builder(config_class: type[C]) -> Callable[[Callable[[C], M]], Builder[C, M]]:
    """Decorate ``def name(config: config_class) -> Net`` into a :class:`Builder`."""

    def wrap(build: Callable[[C], M]) -> Builder[C, M]:
        return Builder(config_class, build)

    return wrap


def config_of(model: nn.Module) -> FCNConfig:
    """The config a net was built from (its builder's, or its checkpoint's).

    Raises ValueError for a net not made by a builder (an ``FCN`` put together by hand).
    """
    config = getattr(model, "config", None)
    if not isinstance(config, FCNConfig):
        raise ValueError(
            f"{type(model).__name__} was not made by a builder of fcnseg.models.list_models(),"
            " so it has no config"
        )
    return config


def settings_of(model: nn.Module) -> dict[str, Any]:
    """The config of ``model`` as a plain dict (what checkpoints and exports store)."""
    return dataclasses.asdict(config_of(model))
