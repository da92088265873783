"""Read and write ``.caffemodel`` files without Caffe: layer names and weight blobs.

A ``.caffemodel`` is a binary protobuf ``NetParameter`` holding each layer's name and its
parameter blobs; :mod:`fcnseg.interop.caffe_pb` declares the few messages needed. Both layouts
found in the wild are read: current ``layer`` entries (the FCN releases) and the older
``layers`` entries (the VGG16 ILSVRC classifier, 2014), with shapes given as ``shape.dim`` or
as the legacy num/channels/height/width. :mod:`fcnseg.interop.caffe_import` places the blobs
in fcnseg's nets.

A malformed file raises :class:`CaffeModelError` naming it, before any large allocation: the
file size is checked before parsing, protobuf's decode errors are caught (a length that points
past the end is one), and every blob's element count must equal the product of its shape,
which is capped by what the file can hold.

Time and memory are bounded by what the nets we import could hold, not by what a file
declares: before protobuf builds a single message, :func:`check_wire_format` walks the wire
format (skipping the weights' packed arrays and the fields fcnseg does not read) and refuses
more than :data:`MAX_LAYERS` layers, more than :data:`MAX_WIRE_FIELDS` fields or a blob shape
of more than :data:`MAX_BLOB_AXES` axes. Three bytes per empty layer would otherwise make
protobuf build 5 million layer messages from 15 MB (35 s and 4.5 GB, issue 12).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from fcnseg.errors import FcnsegError

try:
    from google.protobuf.message import DecodeError

    from fcnseg.interop import caffe_pb
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "reading .caffemodel files needs the protobuf package: pip install 'fcnseg[caffe]'"
    ) from error

# protobuf messages cannot exceed 2 GiB; the largest FCN caffemodel is about 0.5 GiB.
MAX_CAFFEMODEL_BYTES = 2**31 - 1
MAX_BLOB_AXES = 32  # Caffe's kMaxBlobAxes
# The FCN nets have at most about 60 layers (with the non-weight ones); Caffe's deepest
# classifiers (ResNet-152 with its BatchNorm and Scale layers) about 900.
MAX_LAYERS = 10_000
# Wire-format fields of the messages read (name, type, bottom, top, blobs, shapes...) across
# the whole file: about 20 per layer. Weights are packed arrays, one field per blob.
MAX_WIRE_FIELDS = 200_000
_MAX_VARINT_BYTES = 10


class CaffeModelError(FcnsegError):
    """A file that is not a readable caffemodel; the message names the file and the fault."""


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class CaffeLayer:
    """One layer of a caffemodel: its name, its type and its parameter blobs (float32)."""

    name: str
    type: str
    blobs: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class CaffeNet:
    """The layers of a caffemodel, in file order.

    ``layout``: "layer" (``LayerParameter``, NetParameter field 100) or "layers"
    (``V1LayerParameter``, field 2; "layers/V0" when the entries nest the oldest format).
    """

    name: str
    layout: str
    layers: tuple[CaffeLayer, ...]

    def blobs(self) -> dict[str, tuple[np.ndarray, ...]]:
        """Blobs by layer name, for the layers that have any."""
        return {layer.name: layer.blobs for layer in self.layers if layer.blobs}


def _is_inner_product(kind: str) -> bool:
    return kind.lower().replace("_", "") == "innerproduct"  # V0 wrote "innerproduct"


class _Malformed(Exception):
    """The wire format breaks here; protobuf's own error will describe it."""


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift >= 7 * _MAX_VARINT_BYTES:
            raise _Malformed
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def check_wire_format(data: bytes, source: str = "<bytes>") -> None:
    """Count what protobuf would build from ``data`` before it builds it.

    Walks the NetParameter's fields and descends into the messages fcnseg reads (layers,
    blobs, shapes), skipping packed arrays and unknown fields by their length. Raises
    :class:`CaffeModelError` past :data:`MAX_LAYERS`, :data:`MAX_WIRE_FIELDS` or
    :data:`MAX_BLOB_AXES`, or on protobuf groups (which no caffemodel has). Where the wire
    format breaks, it stops and leaves the error to protobuf, which parses no further than
    this walk did. Cost: one Python step per field, at most ``MAX_WIRE_FIELDS``.
    """
    stack = [(len(data), "NetParameter")]  # (end of the message, its type)
    pos = fields = layers = 0
    try:
        while stack:
            end, message = stack[-1]
            if pos >= end:
                if pos > end:  # a field ran past its message
                    return
                stack.pop()
                continue
            key, pos = _varint(data, pos, end)
            number, wire = key >> 3, key & 7
            fields += 1
            if fields > MAX_WIRE_FIELDS:
                raise CaffeModelError(
                    f"{source} holds more than {MAX_WIRE_FIELDS:,} protobuf fields in its layers "
                    "and blobs; no caffemodel of an FCN (or of an ImageNet classifier) has as "
                    "many"
                )
            if wire == 0:
                _, pos = _varint(data, pos, end)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                length, pos = _varint(data, pos, end)
                if pos + length > end:
                    return
                if message == "NetParameter" and number in (2, 100):
                    layers += 1
                    if layers > MAX_LAYERS:
                        raise CaffeModelError(
                            f"{source} holds more than {MAX_LAYERS:,} layers; the nets fcnseg "
                            "imports have fewer than 100 (a damaged or hostile file?)"
                        )
                if message == "BlobShape" and number == 1 and length > MAX_BLOB_AXES:
                    # packed varints take 1..10 bytes each: count the bytes that end one
                    if length > MAX_BLOB_AXES * _MAX_VARINT_BYTES:
                        axes = f"more than {MAX_BLOB_AXES}"
                    else:
                        axes = str(sum(byte < 0x80 for byte in data[pos : pos + length]))
                    if axes.startswith("more") or int(axes) > MAX_BLOB_AXES:
                        raise CaffeModelError(
                            f"{source}: a blob shape has {axes} axes (Caffe allows {MAX_BLOB_AXES})"
                        )
                child = caffe_pb.MESSAGE_FIELDS[message].get(number)
                if child is not None:
                    stack.append((pos + length, child))
                else:
                    pos += length
            elif wire in (3, 4):
                raise CaffeModelError(
                    f"{source} is not a caffemodel: it holds protobuf groups (field {number})"
                )
            else:
                return
    except _Malformed:
        return


def _blob_shape(blob: Any, kind: str, index: int) -> tuple[int, ...]:
    """A blob's shape: ``shape.dim``, else the legacy (num, channels, height, width).

    Legacy shapes are always 4-D; as Caffe does when it loads them, a bias (1, 1, 1, O) is
    read as (O,) and an fc weight (1, 1, O, I) as (O, I), so that shapes compare exactly.
    """
    if blob.HasField("shape"):
        if len(blob.shape.dim) > MAX_BLOB_AXES:  # before making a Python int per axis
            raise ValueError(f"a blob shape has {len(blob.shape.dim)} axes (max {MAX_BLOB_AXES})")
        return tuple(blob.shape.dim)
    legacy = ("num", "channels", "height", "width")
    if not any(blob.HasField(name) for name in legacy):
        return ()  # Caffe reads a blob without any shape as a scalar
    shape = tuple(getattr(blob, name) for name in legacy)
    if index == 1 and shape[:3] == (1, 1, 1):
        return shape[3:]
    if index == 0 and _is_inner_product(kind) and shape[:2] == (1, 1):
        return shape[2:]
    return shape


def _blob_array(blob: Any, kind: str, index: int, where: str, max_values: int) -> np.ndarray:
    """A blob's values as float32 in its shape, after checking shape and length agree."""
    shape = _blob_shape(blob, kind, index)
    if len(shape) > MAX_BLOB_AXES:
        raise ValueError(f"{where} has {len(shape)} axes (Caffe allows {MAX_BLOB_AXES})")
    if any(dim <= 0 for dim in shape):
        raise ValueError(f"{where} has shape {shape}; every dimension must be >= 1")
    count = 1
    for dim in shape:  # Python ints: no overflow, and stop as soon as it cannot fit
        count *= dim
        if count > max_values:
            raise ValueError(
                f"{where} declares shape {shape}, more values than the file can hold ({max_values})"
            )
    values, kind = blob.data, "float"
    if len(values) == 0 and len(blob.double_data) > 0:
        values, kind = blob.double_data, "double"
    if len(values) != count:
        raise ValueError(
            f"{where} has {len(values)} {kind} values but its shape {shape} needs {count}"
        )
    # upb hands repeated scalars to numpy as one block copy, not element by element.
    return np.asarray(values, dtype=np.float32).reshape(shape)


def _layer_entries(net: Any) -> tuple[str, list[tuple[str, str, Sequence[Any]]]]:
    """(layout, [(name, type, blobs)]) from either layout of a parsed NetParameter."""
    if len(net.layer) and len(net.layers):
        raise ValueError("it has both 'layer' and 'layers' entries (Caffe refuses such nets)")
    if len(net.layer):
        return "layer", [(entry.name, entry.type, entry.blobs) for entry in net.layer]
    entries, layout = [], "layers"
    for entry in net.layers:
        if entry.HasField("layer"):  # V0: everything nested in the old message
            layout = "layers/V0"
            old = entry.layer
            entries.append((old.name, old.type, old.blobs))
        else:
            kind = caffe_pb.V1_LAYER_TYPES.get(entry.type, f"V1 type {entry.type}")
            entries.append((entry.name, kind, entry.blobs))
    return layout, entries


def parse_caffemodel(data: bytes, source: str = "<bytes>") -> CaffeNet:
    """Decode caffemodel bytes; :class:`CaffeModelError` (naming ``source``) on any fault."""
    if not data:
        raise CaffeModelError(f"{source} is empty, not a caffemodel")
    if len(data) > MAX_CAFFEMODEL_BYTES:
        raise CaffeModelError(
            f"{source} has {len(data)} bytes; a protobuf message holds at most"
            f" {MAX_CAFFEMODEL_BYTES}"
        )
    check_wire_format(data, source)  # bounds what FromString builds
    try:
        net = caffe_pb.NetParameter.FromString(data)
    except DecodeError as error:
        hint = ""
        if data[:200].lstrip().startswith((b"name", b"layer", b"input", b"#")):
            hint = " (it looks like a text .prototxt: pass the binary .caffemodel)"
        raise CaffeModelError(
            f"{source} is not a caffemodel (protobuf NetParameter): {error}{hint}"
        ) from None
    max_values = len(data) // 4  # a float takes 4 bytes on the wire
    try:
        layout, entries = _layer_entries(net)
        layers = []
        for index, (name, kind, blobs) in enumerate(entries):
            label = name or f"#{index}"
            arrays = tuple(
                _blob_array(blob, kind, i, f"layer {label!r} blob {i}", max_values)
                for i, blob in enumerate(blobs)
            )
            layers.append(CaffeLayer(name, kind, arrays))
        name = net.name
    except (ValueError, UnicodeDecodeError) as error:
        raise CaffeModelError(f"{source}: {error}") from None
    if not layers:
        raise CaffeModelError(f"{source} decodes, but holds no layers: not a caffemodel")
    seen: set[str] = set()
    for layer in (layer for layer in layers if layer.blobs):
        if layer.name in seen:
            raise CaffeModelError(f"{source}: two layers with weights are named {layer.name!r}")
        seen.add(layer.name)
    if not any(layer.blobs for layer in layers):
        raise CaffeModelError(
            f"{source} holds {len(layers)} layers but no weights (a net definition, not a model)"
        )
    return CaffeNet(name, layout, tuple(layers))


def read_caffemodel(path: str | os.PathLike) -> CaffeNet:
    """Read a ``.caffemodel`` file (size checked before it is read)."""
    path = Path(path)
    if not path.is_file():
        raise CaffeModelError(f"caffemodel {path} does not exist or is not a file")
    size = path.stat().st_size
    if size > MAX_CAFFEMODEL_BYTES:
        raise CaffeModelError(
            f"{path} has {size} bytes; a protobuf message holds at most {MAX_CAFFEMODEL_BYTES}"
        )
    return parse_caffemodel(path.read_bytes(), source=str(path))


def write_caffemodel(
    path: str | os.PathLike,
    layers: Mapping[str, Sequence[np.ndarray | Tensor]],
    layout: str = "layer",
    legacy_shapes: bool = False,
    types: Mapping[str, str] | None = None,
    name: str = "",
) -> Path:
    """Write blobs by layer name as a caffemodel (small nets: tests, fixtures, hand-offs).

    ``layout``: "layer" (current) or "layers" (V1). ``legacy_shapes``: shapes as
    num/channels/height/width (padded with leading 1s to 4 axes), as old Caffe wrote them.
    ``types``: Caffe type per layer name (default "Convolution"; for "layers", only the
    types in :data:`~fcnseg.interop.caffe_pb.V1_LAYER_TYPES`).
    """
    if layout not in ("layer", "layers"):
        raise ValueError(f"layout must be 'layer' or 'layers', got {layout!r}")
    v1_codes = {kind: code for code, kind in caffe_pb.V1_LAYER_TYPES.items()}
    net = caffe_pb.NetParameter(name=name)
    for layer_name, blobs in layers.items():
        kind = (types or {}).get(layer_name, "Convolution")
        if layout == "layer":
            entry = net.layer.add(name=layer_name, type=kind)
        else:
            if kind not in v1_codes:
                raise ValueError(f"no V1 layer type for {kind!r}; known: {sorted(v1_codes)}")
            entry = net.layers.add(name=layer_name, type=v1_codes[kind])
        for values in blobs:
            array = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values)
            blob = entry.blobs.add()
            if legacy_shapes:
                if array.ndim > 4:
                    raise ValueError(f"{layer_name}: legacy shapes have 4 axes, not {array.ndim}")
                dims = (1,) * (4 - array.ndim) + array.shape
                blob.num, blob.channels, blob.height, blob.width = dims
            else:
                blob.shape.dim.extend(array.shape)
            blob.data.extend(array.astype(np.float32).ravel().tolist())
    path = Path(path)
    path.write_bytes(net.SerializeToString())
    return path
