"""fcnseg: Fully Convolutional Networks for semantic segmentation (Long, Shelhamer & Darrell).

The public API: the builders, save/load, ``ensemble`` (several saved nets as one),
``segment`` (labels of any image), and the confusion-matrix metrics.
"""

from fcnseg.checkpoint import ensemble, load, save
from fcnseg.evaluate.metrics import ConfusionMatrix
from fcnseg.inference.segment import segment
from fcnseg.metadata import Metadata, metadata_of
from fcnseg.models import (
    FCN,
    config_of,
    create_model,
    fcn8s,
    fcn8s_atonce,
    fcn16s,
    fcn32s,
    list_models,
)

__version__ = "0.1.0"
__all__ = [
    "FCN",
    "ConfusionMatrix",
    "Metadata",
    "config_of",
    "create_model",
    "ensemble",
    "fcn8s",
    "fcn8s_atonce",
    "fcn16s",
    "fcn32s",
    "list_models",
    "load",
    "metadata_of",
    "save",
    "segment",
]
