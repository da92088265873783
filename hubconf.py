"""torch.hub entry points: ``torch.hub.load("<owner>/fcnseg", "fcn8s", weights="voc-fcn8s")``.

Each entry is an fcnseg builder; ``weights`` (a whole net: "voc-fcn8s", a file) and
``weights_backbone`` ("imagenet", a registry name, a file) fill it as in
``fcnseg.fcn8s(...)``. ``fcnseg weights`` lists the names. Tested with ``source="local"``.
"""

import sys
from pathlib import Path

dependencies = ["torch", "numpy", "PIL", "tqdm"]

_SRC = Path(__file__).resolve().parent / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:  # a checkout (torch.hub's copy) is not installed
    sys.path.insert(0, str(_SRC))

from fcnseg.models import (  # noqa: E402
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
)

__all__ = [
    "fcn8s",
    "fcn8s_atonce",
    "fcn8s_mobilenet_v3_large",
    "fcn8s_resnet18",
    "fcn8s_resnet34",
    "fcn8s_resnet50",
    "fcn8s_resnet101",
    "fcn16s",
    "fcn32s",
    "fcn_alexnet",
]
