"""Backbones: classifiers cut into named feature taps, each with its channels and stride."""

from fcnseg.models.backbones.alexnet import AlexNet
from fcnseg.models.backbones.base import Backbone, Tap
from fcnseg.models.backbones.googlenet import GoogLeNet
from fcnseg.models.backbones.mobilenet import MobileNetV3Large
from fcnseg.models.backbones.resnet import ResNet
from fcnseg.models.backbones.vgg import VGG16

__all__ = ["AlexNet", "Backbone", "GoogLeNet", "MobileNetV3Large", "ResNet", "Tap", "VGG16"]
