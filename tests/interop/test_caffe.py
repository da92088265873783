"""Caffe import: caffemodels of both layouts written with known weights, read back, placed.

Nets are width 1/16 so that the files stay tiny; the layer names are the full-size ones, and
the full-size shapes of every official model are checked on the 'meta' device.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("google.protobuf", reason="the caffe extra (protobuf) is not installed")

from fcnseg import checkpoint
from fcnseg.interop import caffe, caffe_pb
from fcnseg.interop.caffe import CaffeModelError, parse_caffemodel, read_caffemodel
from fcnseg.interop.caffe import write_caffemodel as write
from fcnseg.interop.caffe_import import (
    CaffeImportError,
    convert_caffemodel,
    import_caffemodel,
    match_blobs,
    plan_import,
    target_shapes,
)
from fcnseg.metadata import metadata_of
from fcnseg.models import MODELS, registry
from fcnseg.models.surgery import from_torchvision_vgg16, transplant_vgg16

WIDTH = 1 / 16
VGG_FCNS = ("fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce")


def random_net(arch: str, seed: int = 0, **settings) -> torch.nn.Module:
    """A net with every parameter random, upsampling included (so each must be imported)."""
    settings = {"num_classes": 5, "width": WIDTH, **settings}
    model = MODELS[arch](**settings).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model


def caffe_layers(model: torch.nn.Module, fc_as_inner_product: bool = False):
    """The model's weights as Caffe would hold them: blobs and types by layer name."""
    layers: dict[str, list[torch.Tensor]] = {}
    types: dict[str, str] = {}
    for key, value in model.state_dict().items():
        module, _, _ = key.rpartition(".")
        if not module:  # a skip scale: Caffe's Scale layer has one (equal) value per channel
            channels = model.backbone.tap(key.removeprefix("scale_")).channels
            layers[key], types[key] = [value.expand(channels).clone()], "Scale"
            continue
        name = module.removeprefix("backbone.")
        layers.setdefault(name, []).append(value)
        types[name] = "Deconvolution" if name.startswith("upscore") else "Convolution"
    if fc_as_inner_product:
        for name in ("fc6", "fc7"):
            weight, bias = layers[name]
            layers[name], types[name] = [weight.reshape(weight.shape[0], -1), bias], "InnerProduct"
    return layers, types


def assert_same_net(imported: torch.nn.Module, reference: torch.nn.Module, *sizes) -> None:
    got, expected = imported.state_dict(), reference.state_dict()
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
    with torch.no_grad():
        for size in sizes or ((1, 37, 45),):
            x = torch.randn(size[0], reference.config.in_channels, *size[1:])
            torch.testing.assert_close(imported(x), reference(x), rtol=0, atol=0)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("arch", VGG_FCNS)
def test_current_layout_round_trip(tmp_path, arch):
    reference = random_net(arch)
    layers, types = caffe_layers(reference)
    path = write(tmp_path / f"{arch}.caffemodel", layers, types=types, name=arch)
    model, report = import_caffemodel(path)
    assert report.layout == "layer" and report.arch == arch and report.net_name == arch
    assert report.settings == {"num_classes": 5, "in_channels": 3, "width": WIDTH}
    assert not report.unplaced and not report.unfilled
    assert set(report.filled) == set(reference.state_dict())
    assert_same_net(model, reference, (1, 37, 45), (2, 20, 33))


@pytest.mark.parametrize("arch", VGG_FCNS[:3])
def test_v1_layout_with_legacy_shapes_round_trip(tmp_path, arch):
    reference = random_net(arch, seed=1)
    layers, types = caffe_layers(reference, fc_as_inner_product=True)
    path = write(
        tmp_path / "v1.caffemodel", layers, layout="layers", legacy_shapes=True, types=types
    )
    blob = caffe_pb.NetParameter.FromString(path.read_bytes()).layers[0].blobs[1]
    assert not blob.HasField("shape") and (blob.num, blob.height, blob.width) == (1, 1, 4)
    model, report = import_caffemodel(path)
    assert report.layout == "layers" and report.arch == arch
    assert report.filled["backbone.fc6.weight"] == "fc6 blob 0 (fc->conv)"
    assert_same_net(model, reference)


def test_width_is_inferred_for_any_multiplier(tmp_path):
    """At width 0.05, conv1_1's 3 channels suggest 3/64; only fc6's 205/4096 builds the net."""
    reference = random_net("fcn32s", width=0.05)
    path = write(tmp_path / "narrow.caffemodel", caffe_layers(reference)[0])
    model, report = import_caffemodel(path)
    assert report.settings["width"] == 205 / 4096
    assert_same_net(model, reference)


def test_v0_layout(tmp_path):
    """The oldest files nest each layer in V1LayerParameter.layer (V0LayerParameter)."""
    net = caffe_pb.NetParameter()
    for name, kind, shapes in (
        ("conv1_1", "conv", ((2, 3, 3, 3),)),
        ("fc6", "innerproduct", ((1, 1, 4, 18),)),
    ):
        old = net.layers.add().layer
        old.name, old.type = name, kind
        for shape in shapes:
            blob = old.blobs.add()
            blob.num, blob.channels, blob.height, blob.width = shape
            blob.data.extend(range(int(np.prod(shape))))
    parsed = parse_caffemodel(net.SerializeToString())
    assert parsed.layout == "layers/V0"
    assert [(layer.name, layer.blobs[0].shape) for layer in parsed.layers] == [
        ("conv1_1", (2, 3, 3, 3)),
        ("fc6", (4, 18)),  # an fc weight's legacy (1, 1, O, I) is read as (O, I)
    ]


def test_reader_returns_the_written_blobs(tmp_path):
    weight = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    bias = np.array([0.5, -1.5], dtype=np.float32)
    for layout, legacy in (("layer", False), ("layers", True)):
        path = write(tmp_path / f"{layout}.caffemodel", {"conv1_1": [weight, bias]}, layout, legacy)
        net = read_caffemodel(path)
        (layer,) = net.layers
        assert (layer.name, layer.type) == ("conv1_1", "Convolution")
        np.testing.assert_array_equal(layer.blobs[0], weight)
        np.testing.assert_array_equal(layer.blobs[1], bias)  # (1, 1, 1, 2) read as (2,)
        assert layer.blobs[0].dtype == np.float32


def test_double_data_blobs_are_read_as_float32(tmp_path):
    net = caffe_pb.NetParameter()
    blob = net.layer.add(name="conv1_1").blobs.add()
    blob.shape.dim.extend([3])
    blob.double_data.extend([0.25, 1.5, -2.0])
    (layer,) = parse_caffemodel(net.SerializeToString()).layers
    np.testing.assert_array_equal(layer.blobs[0], np.array([0.25, 1.5, -2.0], np.float32))


def test_vgg16_classifier_fills_the_backbone_of_any_fcn(tmp_path):
    """VGG16 ILSVRC: V1 layout, legacy shapes, fc6/fc7/fc8 as InnerProduct."""
    classifier = random_net("fcn32s", seed=2)  # its backbone stands in for the classifier's
    layers, types = caffe_layers(classifier, fc_as_inner_product=True)
    layers = {k: v for k, v in layers.items() if not k.startswith(("score", "upscore"))}
    layers["fc8"], types["fc8"] = [torch.randn(10, 256), torch.randn(10)], "InnerProduct"
    path = write(tmp_path / "vgg16.caffemodel", layers, "layers", legacy_shapes=True, types=types)

    with pytest.raises(CaffeImportError, match="classifier .*give arch .*num_classes"):
        import_caffemodel(path)
    model, report = import_caffemodel(path, arch="fcn8s", num_classes=3)
    assert "fc8" in report.unplaced and "10 classes" in report.unplaced["fc8"]
    assert set(report.unfilled) == {
        key for key in model.state_dict() if key.startswith(("score", "upscore"))
    }
    # The same as torchvision-format weights through surgery.transplant_vgg16.
    torchvision = {}
    for index, name in zip((0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), _VGG_CONVS):
        torchvision[f"features.{index}.weight"], torchvision[f"features.{index}.bias"] = layers[
            name
        ]
    for index, name in ((0, "fc6"), (3, "fc7"), (6, "fc8")):
        torchvision[f"classifier.{index}.weight"], torchvision[f"classifier.{index}.bias"] = layers[
            name
        ]
    transplanted = MODELS["fcn8s"](num_classes=3, width=WIDTH).eval()
    transplant_vgg16(transplanted, torchvision)
    assert_same_net(model, transplanted)
    assert from_torchvision_vgg16(torchvision)["fc6.weight"].shape == (256, 32, 7, 7)


_VGG_CONVS = tuple(
    f"conv{s}_{i}" for s, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1)
)


# --------------------------------------------------------------------------- variants


def test_siftflow_two_heads(tmp_path):
    semantic = random_net("fcn16s", seed=3, num_classes=6)
    geometric = random_net("fcn16s", seed=4, num_classes=3)
    geometric.backbone.load_state_dict(semantic.backbone.state_dict())
    layers = {}
    for suffix, net in (("_sem", semantic), ("_geo", geometric)):
        for name, blobs in caffe_layers(net)[0].items():
            head = name.startswith(("score", "upscore"))
            layers[name + suffix if head else name] = blobs
    path = write(tmp_path / "siftflow.caffemodel", layers)

    model, report = import_caffemodel(path)
    assert report.head == "sem" and report.settings["num_classes"] == 6
    assert set(report.unplaced) == {
        "score_fr_geo",
        "upscore2_geo",
        "score_pool4_geo",
        "upscore16_geo",
    }
    assert "head='geo'" in report.unplaced["score_fr_geo"]
    assert_same_net(model, semantic)
    model, report = import_caffemodel(path, head="geo")
    assert report.settings["num_classes"] == 3 and "score_fr_sem" in report.unplaced
    assert_same_net(model, geometric)
    with pytest.raises(CaffeImportError, match="head 'depth' is not in the net"):
        import_caffemodel(path, head="depth")


def test_nyud_early_fusion_has_four_input_channels(tmp_path):
    reference = random_net("fcn32s", seed=5, num_classes=4, in_channels=4)
    layers, types = caffe_layers(reference)
    layers = {("conv1_1_bgrd" if k == "conv1_1" else k): v for k, v in layers.items()}
    path = write(tmp_path / "color-d.caffemodel", layers)
    model, report = import_caffemodel(path)
    assert report.settings["in_channels"] == 4
    assert report.filled["backbone.conv1_1.weight"] == "conv1_1_bgrd blob 0"
    assert_same_net(model, reference)


def test_nyud_late_fusion_imports_one_tower(tmp_path):
    color, hha = random_net("fcn32s", seed=6), random_net("fcn32s", seed=7)
    hha.upscore.load_state_dict(color.upscore.state_dict())  # the towers share upscore
    layers = {}
    for tower, net in (("color", color), ("hha", hha)):
        for name, blobs in caffe_layers(net)[0].items():
            layers[name if name == "upscore" else name + tower] = blobs
    path = write(tmp_path / "color-hha.caffemodel", layers)
    with pytest.raises(CaffeImportError, match=r"late fusion of 2 towers \(color, hha.*tower="):
        import_caffemodel(path)
    model, report = import_caffemodel(path, tower="hha")
    assert "conv1_1color" in report.unplaced and "tower='color'" in report.unplaced["fc7color"]
    assert any("tower 'hha'" in note for note in report.notes)
    assert_same_net(model, hha)


def test_fcn_alexnet(tmp_path, monkeypatch):
    if "fcn_alexnet" not in MODELS:
        pytest.skip("this fcnseg has no fcn_alexnet")
    reference = random_net("fcn_alexnet", seed=8, width=1 / 8)
    layers, types = caffe_layers(reference)
    path = write(tmp_path / "alexnet.caffemodel", layers, types=types)
    model, report = import_caffemodel(path)
    assert report.arch == "fcn_alexnet" and report.settings["width"] == 1 / 8
    assert_same_net(model, reference, (1, 40, 37))
    without = {name: builder for name, builder in MODELS.items() if name != "fcn_alexnet"}
    monkeypatch.setattr(registry, "MODELS", without)
    with pytest.raises(CaffeImportError, match="FCN-AlexNet .*no AlexNet .* net yet"):
        import_caffemodel(path)


def test_other_classes_keep_the_paper_init_for_the_head(tmp_path):
    reference = random_net("fcn8s", seed=9)
    path = write(tmp_path / "voc.caffemodel", caffe_layers(reference)[0])
    model, report = import_caffemodel(path, num_classes=7)
    assert report.settings["num_classes"] == 7
    assert all(key.startswith(("score", "upscore")) for key in report.unfilled)
    assert "another number of classes" in report.unfilled["score_fr.weight"]
    torch.testing.assert_close(model.backbone.fc7.weight, reference.backbone.fc7.weight)
    assert not model.score_fr.weight.any()  # section 4.3: zero-initialised scores


def test_forcing_a_coarser_arch_reports_the_skips(tmp_path):
    path = write(tmp_path / "atonce.caffemodel", caffe_layers(random_net("fcn8s_atonce"))[0])
    _, report = import_caffemodel(path, arch="fcn32s")
    assert {"score_pool4", "score_pool3", "upscore2", "upscore8"} <= set(report.unplaced)
    assert "fcn8s_atonce" in report.unplaced["scale_pool4"]
    assert set(report.unfilled) == {"upscore.weight"}


def test_skip_scale_must_be_one_constant(tmp_path):
    layers, _ = caffe_layers(random_net("fcn8s_atonce"))
    layers["scale_pool3"] = [torch.linspace(1e-4, 2e-4, 16)]
    path = write(tmp_path / "scaled.caffemodel", layers)
    with pytest.raises(CaffeImportError, match="scale_pool3.*each channel differently"):
        import_caffemodel(path)


def test_backbone_shape_mismatch_names_the_layer(tmp_path):
    layers, _ = caffe_layers(random_net("fcn32s"))
    layers["conv3_2"] = [torch.zeros(16, 15, 3, 3), torch.zeros(16)]
    path = write(tmp_path / "bad.caffemodel", layers)
    with pytest.raises(CaffeImportError, match=r"'conv3_2' blob 0 has shape \(16, 15, 3, 3\)"):
        import_caffemodel(path)


def test_missing_backbone_layer_and_missing_bias(tmp_path):
    layers, _ = caffe_layers(random_net("fcn32s"))
    layers["conv2_2"] = layers["conv2_2"][:1]  # bias_term: false
    model, report = import_caffemodel(write(tmp_path / "nobias.caffemodel", layers))
    assert report.filled["backbone.conv2_2.bias"] == "conv2_2 blob 1 (zero)"
    assert not model.backbone.conv2_2.bias.any()
    del layers["conv4_1"]
    with pytest.raises(CaffeImportError, match="backbone.conv4_1.weight: no layer 'conv4_1'"):
        import_caffemodel(write(tmp_path / "hole.caffemodel", layers))


def test_not_an_fcn(tmp_path):
    path = write(
        tmp_path / "lenet.caffemodel", {"conv1": [np.ones((2, 1, 5, 5))], "ip1": [np.ones((3, 8))]}
    )
    message = "neither score_fr .* nor fc8" if "fcn_alexnet" in MODELS else "neither VGG16"
    with pytest.raises(CaffeImportError, match=message):
        import_caffemodel(path)
    path = write(tmp_path / "other.caffemodel", {"ip1": [np.ones((3, 8))]})
    with pytest.raises(CaffeImportError, match="neither VGG16's conv1_1 nor AlexNet's conv1.*ip1"):
        import_caffemodel(path)


# --------------------------------------------------------------------------- official models


def _full_shapes(arch, num_classes, in_channels=3, rename=lambda name: name, scale=True):
    shapes: dict[str, list[tuple[int, ...]]] = {}
    for key, shape in target_shapes(
        arch, {"num_classes": num_classes, "in_channels": in_channels}
    ).items():
        module, _, _ = key.rpartition(".")
        if not module:  # Scale: one value per channel of pool4 (512) or pool3 (256)
            shapes[rename(key)] = [(512 if key.endswith("4") else 256,)]
        else:
            shapes.setdefault(rename(module.removeprefix("backbone.")), []).append(shape)
    return shapes


def _vgg16_ilsvrc():
    shapes = _full_shapes("fcn32s", 1)
    del shapes["score_fr"], shapes["upscore"]
    shapes["fc6"], shapes["fc7"] = [(4096, 25088), (4096,)], [(4096, 4096), (4096,)]
    shapes["fc8"] = [(1000, 4096), (1000,)]
    return shapes


def _two_heads(arch, classes):
    shapes = {}
    for suffix, k in (("_sem", classes[0]), ("_geo", classes[1])):
        head = lambda n, s=suffix: n + s if n.startswith(("score", "upscore")) else n  # noqa: E731
        shapes.update(_full_shapes(arch, k, rename=head))
    return shapes


OFFICIAL = {  # name: (shapes, import options, expected arch, classes, in_channels)
    "voc-fcn32s": (lambda: _full_shapes("fcn32s", 21), {}, "fcn32s", 21, 3),
    "voc-fcn16s": (lambda: _full_shapes("fcn16s", 21), {}, "fcn16s", 21, 3),
    "voc-fcn8s": (lambda: _full_shapes("fcn8s", 21), {}, "fcn8s", 21, 3),
    "voc-fcn8s-atonce": (lambda: _full_shapes("fcn8s_atonce", 21), {}, "fcn8s_atonce", 21, 3),
    "pascalcontext-fcn8s": (lambda: _full_shapes("fcn8s", 60), {}, "fcn8s", 60, 3),
    "nyud-fcn32s-color": (lambda: _full_shapes("fcn32s", 40), {}, "fcn32s", 40, 3),
    "nyud-fcn32s-color-d": (
        lambda: _full_shapes("fcn32s", 40, 4, lambda n: "conv1_1_bgrd" if n == "conv1_1" else n),
        {},
        "fcn32s",
        40,
        4,
    ),
    "nyud-fcn32s-color-hha": (
        lambda: {
            **_full_shapes("fcn32s", 40, rename=lambda n: n if n == "upscore" else n + "color"),
            **_full_shapes("fcn32s", 40, rename=lambda n: n if n == "upscore" else n + "hha"),
        },
        {"tower": "hha"},
        "fcn32s",
        40,
        3,
    ),
    "siftflow-fcn8s": (lambda: _two_heads("fcn8s", (33, 3)), {}, "fcn8s", 33, 3),
    "siftflow-fcn16s-geo": (lambda: _two_heads("fcn16s", (33, 3)), {"head": "geo"}, "fcn16s", 3, 3),
    "vgg16-ilsvrc-as-fcn8s": (_vgg16_ilsvrc, {"arch": "fcn8s", "num_classes": 21}, "fcn8s", 21, 3),
}
if "fcn_alexnet" in MODELS:
    OFFICIAL["voc-fcn-alexnet"] = (
        lambda: _full_shapes("fcn_alexnet", 21),
        {},
        "fcn_alexnet",
        21,
        3,
    )


@pytest.mark.parametrize("name", OFFICIAL)
def test_official_models_full_size_shapes(name):
    """Names and full-size shapes of each released model map completely (no weights needed)."""
    make, options, arch, classes, in_channels = OFFICIAL[name]
    shapes = make()
    plan = plan_import(shapes, **options)
    assert (plan.arch, plan.settings) == (
        arch,
        {"num_classes": classes, "in_channels": in_channels, "width": 1.0},
    )
    ours = {plan.renames.get(n, n): s for n, s in shapes.items() if n not in plan.skipped}
    target = target_shapes(plan.arch, plan.settings)
    matches, unplaced = match_blobs(ours, target)
    assert not unplaced
    classifier = name.startswith("vgg16")
    head = {key for key in target if key.startswith(("score", "upscore"))}
    assert set(matches) == set(target) - (head if classifier else set())
    if classifier:  # fc6: 4096 x 25088 -> 4096 x 512 x 7 x 7
        assert matches["backbone.fc6.weight"].how == "fc->conv"


# --------------------------------------------------------------------------- bad files


@pytest.fixture(scope="module")
def valid_bytes():
    net = caffe_pb.NetParameter(name="tiny")
    layer = net.layer.add(name="conv1_1", type="Convolution")
    for shape in ((2, 3, 1, 1), (2,)):
        blob = layer.blobs.add()
        blob.shape.dim.extend(shape)
        blob.data.extend(np.linspace(-1, 1, int(np.prod(shape))).tolist())
    return net.SerializeToString()


def _net_bytes(shape, values, legacy=False):
    net = caffe_pb.NetParameter()
    blob = net.layer.add(name="conv1_1").blobs.add()
    if legacy:
        blob.num, blob.channels, blob.height, blob.width = shape
    else:
        blob.shape.dim.extend(shape)
    blob.data.extend(values)
    return net.SerializeToString()


BAD_BYTES = {
    "empty": (b"", "is empty"),
    "length past the end": (b"\xa2\x06\xff\xff\xff\xff\x0f\x00", "not a caffemodel"),
    "text prototxt": (b'name: "FCN"\nlayer {\n  name: "conv1_1"\n}\n', "text .prototxt"),
    "huge shape": (_net_bytes((2**40, 2**40, 3), [1.0]), "more values than the file can hold"),
    "short data": (_net_bytes((2, 3), [1.0] * 5), "5 float values but its shape .* needs 6"),
    "zero dimension": (_net_bytes((1, 0, 1, 1), [], legacy=True), "every dimension must be >= 1"),
    "negative dimension": (_net_bytes((2, -3), [1.0] * 6), "every dimension must be >= 1"),
    "no layers": (caffe_pb.NetParameter(name="x").SerializeToString(), "holds no layers"),
    "no weights": (
        caffe_pb.NetParameter(layer=[caffe_pb.LayerParameter(name="relu")]).SerializeToString(),
        "no weights",
    ),
    "both layouts": (
        caffe_pb.NetParameter(
            layer=[caffe_pb.LayerParameter(name="a")], layers=[caffe_pb.V1LayerParameter(name="b")]
        ).SerializeToString(),
        "both 'layer' and 'layers'",
    ),
}


@pytest.mark.parametrize("case", BAD_BYTES)
def test_bad_bytes_give_clear_errors(case):
    data, message = BAD_BYTES[case]
    with pytest.raises(CaffeModelError, match=f"suspect.caffemodel.*{message}"):
        parse_caffemodel(data, source="suspect.caffemodel")


def test_bad_files_name_the_file(tmp_path, valid_bytes, monkeypatch):
    with pytest.raises(CaffeModelError, match="missing.caffemodel does not exist"):
        read_caffemodel(tmp_path / "missing.caffemodel")
    with pytest.raises(CaffeModelError, match="is not a file"):
        read_caffemodel(tmp_path)
    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(valid_bytes[: len(valid_bytes) - 7])
    with pytest.raises(CaffeModelError, match="truncated.caffemodel is not a caffemodel"):
        read_caffemodel(truncated)
    duplicate = tmp_path / "duplicate.caffemodel"
    duplicate.write_bytes(valid_bytes + valid_bytes)  # protobuf concatenates repeated fields
    with pytest.raises(CaffeModelError, match="two layers with weights are named 'conv1_1'"):
        read_caffemodel(duplicate)
    monkeypatch.setattr(caffe, "MAX_CAFFEMODEL_BYTES", 16)
    with pytest.raises(
        CaffeModelError, match=r"has \d+ bytes; a protobuf message holds at most 16"
    ):
        read_caffemodel(truncated)


FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(data):
    try:
        parse_caffemodel(data, source="fuzz")
    except CaffeModelError as error:
        assert "fuzz" in str(error)


@FUZZ
@given(st.data())
def test_fuzz_mutated_valid_file(valid_bytes, data):
    raw = bytearray(valid_bytes)
    edits = st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255))
    for position, value in data.draw(st.lists(edits, max_size=6)):
        raw[position] = value
    raw = raw[: data.draw(st.integers(1, len(raw)))] + data.draw(st.binary(max_size=16))
    try:
        net = parse_caffemodel(bytes(raw), source="mutant")
    except CaffeModelError as error:
        assert "mutant" in str(error)
    else:
        for layer in net.layers:
            assert all(blob.dtype == np.float32 for blob in layer.blobs)


# --------------------------------------------------------------------------- checkpoints, CLI


def test_convert_saves_a_checkpoint_with_reference_meta(tmp_path):
    reference = random_net("fcn8s", seed=10, num_classes=21)
    path = write(tmp_path / "voc-fcn8s.caffemodel", caffe_layers(reference)[0])
    report = convert_caffemodel(path, tmp_path / "voc.pt", dataset="voc")
    model = checkpoint.load(report.saved_to)
    meta = metadata_of(model).to_dict()
    assert meta["classes"][:2] == ["background", "aeroplane"]
    assert meta["preprocessing"] == {
        "type": "CaffeMeanSubtract",
        "mean_bgr": [104.00698793, 116.66876762, 122.67891434],
        "extra_mean": None,
    }
    assert meta["ignore_index"] == 255
    assert meta["caffe"] == {"source": "voc-fcn8s.caffemodel", "net": "", "layout": "layer"}
    assert_same_net(model.eval(), reference)
    with pytest.raises(CaffeImportError, match="dataset 'nyud' has 40 classes, the net scores 21"):
        convert_caffemodel(path, tmp_path / "x.pt", dataset="nyud")


def test_convert_records_the_dataset_mean(tmp_path):
    path = write(
        tmp_path / "d.caffemodel",
        caffe_layers(random_net("fcn32s", num_classes=40, in_channels=4))[0],
    )
    report = convert_caffemodel(path, tmp_path / "d.pt", dataset="nyud")
    meta = metadata_of(checkpoint.load(report.saved_to)).to_dict()
    assert meta["modality"] == "rgbd" and meta["preprocessing"]["mean_bgr"] == [
        116.19,
        97.203,
        92.318,
    ]
    assert "log(depth in mm) - 7.844" in meta["depth_preprocessing"]
    report = convert_caffemodel(path, tmp_path / "d.pt", classes=[f"c{i}" for i in range(40)])
    assert metadata_of(checkpoint.load(report.saved_to)).classes[-1] == "c39"


def test_cli_import_caffe(tmp_path, capsys):
    from fcnseg.cli import main

    reference = random_net("fcn16s", seed=11, num_classes=3)
    path = write(tmp_path / "net.caffemodel", caffe_layers(reference)[0])
    (tmp_path / "classes.txt").write_text("sky\nground\n\nthing\n")
    out = tmp_path / "out" / "net.pt"
    argv = [
        "import-caffe",
        str(path),
        "--out",
        str(out),
        "--classes",
        str(tmp_path / "classes.txt"),
    ]
    assert main(argv + ["--json", str(tmp_path / "report.json")]) == 0
    printed = capsys.readouterr().out
    assert "built fcn16s(num_classes=3, in_channels=3, width=0.0625)" in printed
    assert f"wrote {out}" in printed
    assert metadata_of(checkpoint.load(out)).classes == ("sky", "ground", "thing")
    assert '"arch": "fcn16s"' in (tmp_path / "report.json").read_text()

    (tmp_path / "junk.caffemodel").write_bytes(b"\x0a\xff\xff\xff")
    assert main(["import-caffe", str(tmp_path / "junk.caffemodel"), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "fcnseg import-caffe: error:" in error and "junk.caffemodel" in error
