"""The contract every backbone keeps, so that FCN heads can be put on any of them."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from fcnseg.models.geometry import CoordMap, compose


@dataclass(frozen=True)
class Tap:
    """A named intermediate output: the layer it is read after, its channels and its stride.

    ``name`` is the reference blob name (``pool4``, ``fc7``); ``layer`` the last layer that
    writes it (Caffe runs ReLU and dropout in place, so blob ``fc7`` is the output of ``drop7``).
    """

    name: str
    layer: str
    channels: int
    stride: int


class Backbone(nn.Sequential):
    """A chain of named layers whose ``forward`` returns the outputs at its taps.

    ``forward(x: N x C x H x W) -> {tap name: N x channels x h x w}``. Subclasses name their
    layers after the reference (``conv1_1``, ``pool1``, ..., ``fc7``) and set ``taps``.
    """

    taps: tuple[Tap, ...] = ()

    def tap(self, name: str) -> Tap:
        for tap in self.taps:
            if tap.name == name:
                return tap
        raise KeyError(f"{type(self).__name__} has no tap {name!r}; taps: {self.tap_names()}")

    def tap_names(self) -> list[str]:
        return [tap.name for tap in self.taps]

    def layers_through(self, tap: str) -> list[nn.Module]:
        """The layers from the input up to and including the one that writes ``tap``."""
        last = self.tap(tap).layer
        layers = []
        for name, layer in self.named_children():
            layers.append(layer)
            if name == last:
                return layers
        raise KeyError(f"tap {tap!r} names layer {last!r}, which {type(self).__name__} lacks")

    def coord_map(self, tap: str) -> CoordMap:
        """The coordinate map from the input image to the given tap."""
        return compose(self.layers_through(tap))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        by_layer = {tap.layer: tap.name for tap in self.taps}
        outputs = {}
        for name, layer in self.named_children():
            x = layer(x)
            if name in by_layer:
                outputs[by_layer[name]] = x
                if len(outputs) == len(by_layer):
                    break
        return outputs


def check_size(in_channels: int, width: float) -> None:
    """Raise ``ValueError`` unless ``in_channels >= 1`` and ``width > 0`` (every backbone's)."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
