"""FCN nets: builders for the VGG16 family and the pieces they are made of."""

from fcnseg.models.backbones import VGG16, Backbone, Tap
from fcnseg.models.fcn import BUILDERS, FCN, fcn8s, fcn8s_atonce, fcn16s, fcn32s

__all__ = [
    "BUILDERS",
    "FCN",
    "VGG16",
    "Backbone",
    "Tap",
    "fcn8s",
    "fcn8s_atonce",
    "fcn16s",
    "fcn32s",
]
