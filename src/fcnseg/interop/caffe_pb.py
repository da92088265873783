"""The few Caffe protobuf messages a ``.caffemodel`` needs, built at import time without protoc.

A ``.caffemodel`` is a binary ``NetParameter`` (BVLC Caffe, ``src/caffe/proto/caffe.proto``).
Only the fields that carry layer names and weights are declared here; protobuf skips every
other field of a real file (convolution settings, learning rates, ...) as unknown. The field
numbers are Caffe's, so real files decode and files written with these classes are real
caffemodels (as far as these fields go):

- ``NetParameter``: ``name`` 1, ``layers`` 2 (``V1LayerParameter``, the 2014 layout of the
  VGG16 ILSVRC model), ``layer`` 100 (``LayerParameter``, the current layout).
- ``LayerParameter``: ``name`` 1, ``type`` 2 (a string such as "Convolution"), ``bottom`` 3,
  ``top`` 4, ``blobs`` 7.
- ``V1LayerParameter``: ``bottom`` 2, ``top`` 3, ``name`` 4, ``type`` 5 (the ``LayerType`` enum,
  declared here as a plain int32, which has the same encoding: see :data:`V1_LAYER_TYPES`),
  ``blobs`` 6, and ``layer`` 1, a nested ``V0LayerParameter`` (``name`` 1, ``type`` 2, ``blobs``
  50) that the oldest files carry instead.
- ``BlobProto``: ``num`` 1, ``channels`` 2, ``height`` 3, ``width`` 4 (the legacy 4-D shape),
  ``data`` 5 (packed float), ``shape`` 7 (``BlobShape``), ``double_data`` 8 (packed double).
- ``BlobShape``: ``dim`` 1 (packed int64).

The classes live in a private descriptor pool, so they cannot clash with a ``caffe_pb2`` that
some other package registers in protobuf's default pool.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "fcnseg.caffe"
_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED

# message -> (field name, number, label, type, message type name or None, packed)
_SCHEMA: dict[str, tuple[tuple[str, int, int, int, str | None, bool], ...]] = {
    "BlobShape": (("dim", 1, _REPEATED, _F.TYPE_INT64, None, True),),
    "BlobProto": (
        ("num", 1, _OPTIONAL, _F.TYPE_INT32, None, False),
        ("channels", 2, _OPTIONAL, _F.TYPE_INT32, None, False),
        ("height", 3, _OPTIONAL, _F.TYPE_INT32, None, False),
        ("width", 4, _OPTIONAL, _F.TYPE_INT32, None, False),
        ("data", 5, _REPEATED, _F.TYPE_FLOAT, None, True),
        ("shape", 7, _OPTIONAL, _F.TYPE_MESSAGE, "BlobShape", False),
        ("double_data", 8, _REPEATED, _F.TYPE_DOUBLE, None, True),
    ),
    "LayerParameter": (
        ("name", 1, _OPTIONAL, _F.TYPE_STRING, None, False),
        ("type", 2, _OPTIONAL, _F.TYPE_STRING, None, False),
        ("bottom", 3, _REPEATED, _F.TYPE_STRING, None, False),
        ("top", 4, _REPEATED, _F.TYPE_STRING, None, False),
        ("blobs", 7, _REPEATED, _F.TYPE_MESSAGE, "BlobProto", False),
    ),
    "V0LayerParameter": (
        ("name", 1, _OPTIONAL, _F.TYPE_STRING, None, False),
        ("type", 2, _OPTIONAL, _F.TYPE_STRING, None, False),
        ("blobs", 50, _REPEATED, _F.TYPE_MESSAGE, "BlobProto", False),
    ),
    "V1LayerParameter": (
        ("layer", 1, _OPTIONAL, _F.TYPE_MESSAGE, "V0LayerParameter", False),
        ("bottom", 2, _REPEATED, _F.TYPE_STRING, None, False),
        ("top", 3, _REPEATED, _F.TYPE_STRING, None, False),
        ("name", 4, _OPTIONAL, _F.TYPE_STRING, None, False),
        ("type", 5, _OPTIONAL, _F.TYPE_INT32, None, False),
        ("blobs", 6, _REPEATED, _F.TYPE_MESSAGE, "BlobProto", False),
    ),
    "NetParameter": (
        ("name", 1, _OPTIONAL, _F.TYPE_STRING, None, False),
        ("layers", 2, _REPEATED, _F.TYPE_MESSAGE, "V1LayerParameter", False),
        ("layer", 100, _REPEATED, _F.TYPE_MESSAGE, "LayerParameter", False),
    ),
}

# V1LayerParameter.LayerType values of the layers that carry weights or that FCNs use, and the
# current (string) type each became.
V1_LAYER_TYPES = {
    4: "Convolution",
    39: "Deconvolution",
    14: "InnerProduct",
    5: "Data",
    6: "Dropout",
    15: "LRN",
    17: "Pooling",
    18: "ReLU",
    20: "Softmax",
    21: "SoftmaxWithLoss",
    25: "Eltwise",
    3: "Concat",
    1: "Accuracy",
}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="fcnseg/interop/caffe_subset.proto", package=_PACKAGE, syntax="proto2"
    )
    for message, fields in _SCHEMA.items():
        described = proto.message_type.add(name=message)
        for name, number, label, kind, type_name, packed in fields:
            field = described.field.add(name=name, number=number, label=label, type=kind)
            if type_name is not None:
                field.type_name = f".{_PACKAGE}.{type_name}"
            if packed:
                field.options.packed = True
    return proto


def _message_classes() -> dict[str, type]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor())
    get_class = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.22
    if get_class is None:  # older protobuf
        factory = message_factory.MessageFactory(pool)
        get_class = factory.GetPrototype
    return {name: get_class(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}")) for name in _SCHEMA}


# message -> {field number: message type} of the message fields, for walking the wire format
MESSAGE_FIELDS: dict[str, dict[int, str]] = {
    message: {number: type_name for _, number, _, _, type_name, _ in fields if type_name}
    for message, fields in _SCHEMA.items()
}

_CLASSES = _message_classes()
BlobShape = _CLASSES["BlobShape"]
BlobProto = _CLASSES["BlobProto"]
LayerParameter = _CLASSES["LayerParameter"]
V0LayerParameter = _CLASSES["V0LayerParameter"]
V1LayerParameter = _CLASSES["V1LayerParameter"]
NetParameter = _CLASSES["NetParameter"]

__all__ = [
    "MESSAGE_FIELDS",
    "V1_LAYER_TYPES",
    "BlobProto",
    "BlobShape",
    "LayerParameter",
    "NetParameter",
    "V0LayerParameter",
    "V1LayerParameter",
]
