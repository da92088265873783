"""Backbones: classifiers cut into named feature taps, each with its channels and stride."""

from fcnseg.models.backbones.base import Backbone, Tap
from fcnseg.models.backbones.vgg import VGG16

__all__ = ["Backbone", "Tap", "VGG16"]
