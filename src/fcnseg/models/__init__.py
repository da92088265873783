"""FCN nets: builders for the VGG16 family, the other nets of Table 1, modern backbones."""

from fcnseg.models.backbones import (
    VGG16,
    AlexNet,
    Backbone,
    GoogLeNet,
    MobileNetV3Large,
    ResNet,
    Tap,
)
from fcnseg.models.fcn import (
    BUILDERS,
    FCN,
    GEOMETRIES,
    align_upsampling,
    fcn8s,
    fcn8s_atonce,
    fcn8s_mobilenet_v3_large,
    fcn8s_resnet18,
    fcn8s_resnet34,
    fcn8s_resnet50,
    fcn8s_resnet101,
    fcn16s,
    fcn32s,
    fcn_alexnet,
    fcn_googlenet,
)
from fcnseg.models.fusion import LateFusion, fcn_latefusion
from fcnseg.models.multitask import (
    TwoHeadedFCN,
    fcn8s_two_headed,
    fcn16s_two_headed,
    fcn32s_two_headed,
)

# Nets of several streams or outputs, built on fcn.py's FCN parts, are registered here so
# that checkpoints (fcnseg.save / fcnseg.load) and recipes can name them too.
BUILDERS.update(
    fcn_latefusion=fcn_latefusion,
    fcn32s_two_headed=fcn32s_two_headed,
    fcn16s_two_headed=fcn16s_two_headed,
    fcn8s_two_headed=fcn8s_two_headed,
)

__all__ = [
    "BUILDERS",
    "FCN",
    "GEOMETRIES",
    "VGG16",
    "AlexNet",
    "Backbone",
    "GoogLeNet",
    "LateFusion",
    "MobileNetV3Large",
    "ResNet",
    "Tap",
    "TwoHeadedFCN",
    "align_upsampling",
    "fcn8s",
    "fcn8s_atonce",
    "fcn8s_two_headed",
    "fcn8s_mobilenet_v3_large",
    "fcn8s_resnet18",
    "fcn8s_resnet34",
    "fcn8s_resnet50",
    "fcn8s_resnet101",
    "fcn16s",
    "fcn16s_two_headed",
    "fcn32s",
    "fcn32s_two_headed",
    "fcn_alexnet",
    "fcn_googlenet",
    "fcn_latefusion",
]
