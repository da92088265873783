"""Export fcnseg nets to ONNX and TorchScript, with dynamic batch, height and width.

An FCN takes any image size (section 3), so the files must too: the head crops its upsampled
scores at offsets fixed by the layer geometry, to sizes read from the input at run time. Both
formats keep those sizes symbolic:

- ONNX, by default through ``torch.export`` (``torch.onnx.export(dynamo=True)``, which needs
  ``onnxscript``): batch, height and width are ``Dim.DYNAMIC``, so the crops and the
  overlap of each skip (``min`` of two sizes) stay expressions of the input size. Ceil-mode
  pooling is ONNX's own ``MaxPool(ceil_mode=1)``. The legacy TorchScript-based exporter
  (``dynamo=False``, deprecated by PyTorch) is kept as a fallback: it is fast, but it records
  which side each ``min`` took for the example input.
- TorchScript, through ``torch.jit.trace``: sizes and slices are traced as graph operations,
  but a Python comparison (that same ``min``) is frozen at its example value. ``torch.jit.script``
  does not compile the FCN, and a ``torch.export`` program guards its sizes (no batch of 1,
  no image smaller than about 27 pixels for VGG16), so tracing it is.

Because both fallbacks can freeze a choice, every export is checked against the eager model
at sizes other than the example's (odd, even, tiny, batch 1 and 2); a mismatch raises
:class:`ExportError`. The ONNX check runs in ``onnxruntime`` when it is installed.

The files hold the net only: the input is ``image`` (N x C x H x W float32, *after* the
checkpoint's preprocessing, e.g. Caffe's BGR mean subtraction), the output ``scores``
(N x K x H x W). The checkpoint's metadata (arch, classes, preprocessing) travels as JSON: in
the ONNX ``metadata_props`` under ``fcnseg``, in the TorchScript archive as extra file
``fcnseg.json``. Its ``preprocessing`` is a normaliser's spec
(:func:`fcnseg.data.transforms.normalizer_from_spec`); ``{"type": "PerImageNormalize", "eps":
e}`` asks the consumer for ``(x - m) / (s + e)`` per channel, ``m`` and ``s`` the mean and
standard deviation of that channel over the whole image (raw 0..255 values);
``{"type": "ConcatNormalize", "parts": [spec, ...]}`` (an ensemble of members trained with
different preprocessing) asks for each part's output, concatenated along the channels in order:
the file's input then has ``len(parts) * C`` channels.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fcnseg.errors import EXIT_FAILED, FcnsegError
from fcnseg.metadata import metadata_of
from fcnseg.models import config_of, settings_of
from fcnseg.models.ensemble import Ensemble

logger = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "scores"
META_KEY = "fcnseg"  # ONNX metadata_props key; TorchScript extra file f"{META_KEY}.json"
# Example input: batch 2 and sides of 64, so that no size is 0 or 1 (which torch.export would
# specialise), and the check sizes below differ from it in parity and remainder mod 32.
EXAMPLE_SHAPE = (2, 64, 64)
CHECK_SHAPES = ((1, 37, 53), (2, 70, 45), (1, 5, 3))  # (batch, height, width)
RTOL, ATOL = 1e-4, 1e-4  # float32 kernels differ in summation order, nothing else


class ExportError(FcnsegError, RuntimeError):
    """An export that failed or whose file does not reproduce the eager model."""

    exit_status = EXIT_FAILED


def export_meta(model: nn.Module) -> dict[str, Any]:
    """What a consumer of the file needs: arch, settings, classes, preprocessing, io names."""
    try:
        if isinstance(model, Ensemble):  # its members' archs and settings, as its checkpoint's
            settings, arch = model.settings(), model.arch
        else:
            settings, arch = settings_of(model), model.arch
    except ValueError:  # a net put together by hand, not by a builder
        arch, settings = type(model).__name__, {}
    return {
        "arch": arch,
        "settings": settings,
        **metadata_of(model).to_dict(),
        "input": f"{INPUT_NAME}: N x C x H x W float32, preprocessed",
        "output": f"{OUTPUT_NAME}: N x num_classes x H x W float32 class scores",
    }


def _in_channels(model: nn.Module) -> int:
    if isinstance(model, Ensemble):  # C, or M * C for a split input
        return model.input_channels
    try:
        return config_of(model).in_channels
    except ValueError:  # a net put together by hand: its first convolution's
        pass
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise ExportError(f"cannot tell the input channels of {type(model).__name__}")
    return first.in_channels


def _inputs(
    model: nn.Module, shapes: Sequence[tuple[int, int, int]], seed: int = 0
) -> list[Tensor]:
    generator = torch.Generator().manual_seed(seed)
    channels = _in_channels(model)
    return [torch.randn(n, channels, h, w, generator=generator) for n, h, w in shapes]


def _frozen(model: nn.Module) -> nn.Module:
    """The model in eval mode on the CPU without gradients: itself if it is already, else a
    copy, so that exporting changes nothing in the caller's model."""
    tensors = [*model.parameters(), *model.buffers()]
    if not model.training and all(t.device.type == "cpu" and not t.requires_grad for t in tensors):
        return model
    frozen = copy.deepcopy(model).cpu().eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    return frozen


def _check_close(name: str, size: tuple[int, ...], got: Tensor, expected: Tensor) -> float:
    """The largest difference relative to the largest score; ExportError past the tolerance."""
    if tuple(got.shape) != tuple(expected.shape):
        raise ExportError(
            f"{name} gives shape {tuple(got.shape)} for input {size}, the model"
            f" {tuple(expected.shape)}"
        )
    error, scale = (got - expected).abs().max().item(), expected.abs().max().item()
    if error > ATOL + RTOL * scale:
        raise ExportError(
            f"{name} differs from the model by up to {error:.3g} (scores up to {scale:.3g}) for"
            f" input {size}: the export froze a size that should have stayed dynamic"
        )
    return error / scale if scale > 0 else error


# --------------------------------------------------------------------------- ONNX


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    opset: int | None = None,
    dynamo: bool = True,
    verify: bool = True,
) -> Path:
    """Write ``model`` as ONNX with dynamic batch, height and width; return the path.

    ``opset``: ONNX opset (default: the exporter's own). ``dynamo``: the ``torch.export``-based
    exporter (False: the legacy TorchScript-based one). ``verify``: compare with the model in
    onnxruntime at :data:`CHECK_SHAPES` (skipped, with a log line, without onnxruntime).
    """
    if importlib.util.find_spec("onnx") is None:
        raise ExportError("ONNX export needs onnx (and onnxscript): pip install 'fcnseg[export]'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporter may write the weights to a NAME.onnx.data file beside the graph; everything
    # is written in a scratch folder beside ``path`` and only the one self-contained file is
    # moved into place, so neither a stray .data file nor a half-written export is left.
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as scratch:
        written = _export_onnx_in(model, Path(scratch), opset, dynamo, verify, path)
        os.replace(written, path)
    return path


def _export_onnx_in(
    model: nn.Module, scratch: Path, opset: int | None, dynamo: bool, verify: bool, path: Path
) -> Path:
    """Export into ``scratch``; return the self-contained, checked file there."""
    import onnx

    raw, final = scratch / "export.onnx", scratch / path.name
    frozen = _frozen(model)
    (example,) = _inputs(frozen, [EXAMPLE_SHAPE])
    options: dict[str, Any] = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME]}
    if opset is not None:
        options["opset_version"] = opset
    if dynamo:
        dynamic = {
            0: torch.export.Dim.DYNAMIC,
            2: torch.export.Dim.DYNAMIC,
            3: torch.export.Dim.DYNAMIC,
        }
        options.update(dynamo=True, dynamic_shapes=(dynamic,), verbose=False)
    else:
        axes = {0: "batch", 2: "height", 3: "width"}
        options.update(dynamo=False, dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation chatter; parity is checked
            torch.onnx.export(frozen, (example,), str(raw), **options)
    except ImportError as error:
        raise ExportError(
            f"the ONNX exporter needs a package: {error}; pip install 'fcnseg[export]'"
        ) from error
    except Exception as error:
        raise ExportError(f"ONNX export of {type(model).__name__} failed: {error}") from error
    proto = onnx.load(str(raw))  # with any external data the exporter wrote beside it
    onnx.checker.check_model(proto)
    _name_dynamic_axes(proto)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(export_meta(model))
    onnx.save(proto, str(final))  # one file: the weights inside (ONNX allows up to 2 GB)
    if verify:
        try:
            verify_onnx(final, frozen)
        except ExportError as error:
            raise ExportError(str(error).replace(str(final), str(path))) from None
    return final


def _name_dynamic_axes(proto: Any) -> None:
    """Call the input's symbolic sizes batch, height and width, wherever they appear."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    names = {dims[i].dim_param: name for i, name in ((0, "batch"), (2, "height"), (3, "width"))}
    names.pop("", None)
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]


def verify_onnx(path: str | os.PathLike, model: nn.Module) -> float | None:
    """Largest difference between onnxruntime and ``model`` over :data:`CHECK_SHAPES`, relative
    to the largest score.

    None when onnxruntime is not installed; :class:`ExportError` past the tolerance.
    """
    try:
        import onnxruntime
    except ImportError:
        logger.warning("onnxruntime is not installed: %s is not checked against the model", path)
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    frozen = _frozen(model)
    worst = 0.0
    with torch.no_grad():
        for shape, x in zip(CHECK_SHAPES, _inputs(frozen, CHECK_SHAPES, seed=1)):
            (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
            error = _check_close(f"ONNX file {path}", shape, torch.from_numpy(got), frozen(x))
            worst = max(worst, error)
    logger.info("%s matches the model to %.3g at %s", path, worst, CHECK_SHAPES)
    return worst


# --------------------------------------------------------------------------- TorchScript


def export_torchscript(model: nn.Module, path: str | os.PathLike, verify: bool = True) -> Path:
    """Write ``model`` as a traced TorchScript archive (``torch.jit.load``-able, also from C++).

    ``verify``: compare the traced module with the model at :data:`CHECK_SHAPES`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frozen = _frozen(model)
    (example,) = _inputs(frozen, [EXAMPLE_SHAPE])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarning on the frozen comparisons; checked
            traced = torch.jit.trace(frozen, example, check_trace=False)
    except Exception as error:
        raise ExportError(f"tracing {type(model).__name__} failed: {error}") from error
    if verify:
        with torch.no_grad():
            for shape, x in zip(CHECK_SHAPES, _inputs(frozen, CHECK_SHAPES, seed=1)):
                _check_close("the traced module", shape, traced(x), frozen(x))
    extra = {f"{META_KEY}.json": json.dumps(export_meta(model))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is in maintenance
        torch.jit.save(traced, str(path), _extra_files=extra)
    return path


def load_torchscript(path: str | os.PathLike) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """A TorchScript file written by :func:`export_torchscript` and its metadata."""
    extra = {f"{META_KEY}.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, json.loads(extra[f"{META_KEY}.json"] or "{}")
