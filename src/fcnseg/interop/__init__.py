"""Interoperability: the original Caffe models in, ONNX and TorchScript out.

- :mod:`fcnseg.interop.caffe`: read and write ``.caffemodel`` files (needs ``protobuf``).
- :mod:`fcnseg.interop.caffe_import`: place their blobs in fcnseg's nets and save checkpoints.
- :mod:`fcnseg.interop.export`: ONNX (needs ``onnx`` and ``onnxscript``; checked with
  ``onnxruntime`` when installed) and TorchScript files with dynamic height and width.

Each is imported on first use, so that ``import fcnseg.interop`` needs none of the extras.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CaffeModelError": "caffe",
    "CaffeNet": "caffe",
    "read_caffemodel": "caffe",
    "write_caffemodel": "caffe",
    "CaffeImportError": "caffe_import",
    "ImportReport": "caffe_import",
    "convert_caffemodel": "caffe_import",
    "import_caffemodel": "caffe_import",
    "ExportError": "export",
    "export_onnx": "export",
    "export_torchscript": "export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fcnseg.interop' has no attribute {name!r}")
    return getattr(importlib.import_module(f"fcnseg.interop.{_EXPORTS[name]}"), name)
