"""Named weights into nets, against the local server: ImageNet backbones (torchvision format,
mapped), the Caffe VGG16 and a reference FCN (converted once, cached), paths, errors, hubconf."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch
from hubfixtures import (
    WIDTH,
    caffemodel_bytes,
    random_fcn,
    random_tensors,
    state_bytes,
    torchvision_vgg16_state,
)

import fcnseg
from fcnseg import cli
from fcnseg.data.voc import VOC_CLASSES
from fcnseg.hub import registry
from fcnseg.hub.download import ChecksumError, DownloadError
from fcnseg.hub.registry import UnknownWeightsError
from fcnseg.hub.weights import WeightsError, checksum_status, converted_path, raw_path
from fcnseg.interop.caffe import write_caffemodel
from fcnseg.models import create_model, list_models
from fcnseg.models.backbones import MobileNetV3Large, ResNet
from fcnseg.models.surgery import from_torchvision_vgg16

REPO = Path(__file__).resolve().parents[2]


def torchvision_url(stem: str, data: bytes) -> str:
    """torchvision's naming: <stem>-<first 8 hex of the SHA-256>.pth."""
    return f"https://download.pytorch.org/models/{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth"


@dataclasses.dataclass
class Published:
    vgg16: dict[str, torch.Tensor]
    resnet18: dict[str, torch.Tensor]
    mobilenet: dict[str, torch.Tensor]
    fcn8s: torch.nn.Module
    entries: dict[str, registry.WeightsEntry]


@pytest.fixture
def published(hub_env, server, tmp_path, monkeypatch) -> Published:
    """Small stand-ins for the published files, served at their registry paths; the registry
    entries are the real ones with the URL (torchvision: the hash prefix) of the stand-ins."""
    entries = {}

    def publish(name: str, data: bytes, url: str | None = None) -> None:
        entry = registry.find(name)
        entry = dataclasses.replace(entry, url=url or entry.url, size=len(data))
        server.add(entry.url, data)
        entries[name] = entry

    vgg16 = torchvision_vgg16_state()
    publish("vgg16-imagenet", state_bytes(vgg16), torchvision_url("vgg16", state_bytes(vgg16)))
    resnet = {
        **random_tensors({k: v.shape for k, v in ResNet(18, width=0.25).state_dict().items()}, 3),
        "fc.weight": torch.randn(10, 128),
        "fc.bias": torch.randn(10),
    }
    publish(
        "resnet18-imagenet", state_bytes(resnet), torchvision_url("resnet18", state_bytes(resnet))
    )
    mobile_own = MobileNetV3Large(width=0.25).state_dict()
    mobilenet = {
        **{
            f"features.{k}": v
            for k, v in random_tensors({k: v.shape for k, v in mobile_own.items()}, 4).items()
        },
        "classifier.0.weight": torch.randn(8, 240),
    }
    data = state_bytes(mobilenet)
    publish("mobilenet_v3_large-imagenet", data, torchvision_url("mobilenet_v3_large", data))
    # the Caffe VGG16: the same classifier as conv blobs and InnerProduct fc6/fc7/fc8
    mapped = from_torchvision_vgg16(vgg16)
    layers, types = {}, {}
    for key, value in mapped.items():
        name = key.rpartition(".")[0]
        if name.startswith("fc"):
            value = value.reshape(value.shape[0], -1) if key.endswith("weight") else value
            types[name] = "InnerProduct"
        layers.setdefault(name, []).append(value)
    caffe_vgg = write_caffemodel(tmp_path / "vgg.caffemodel", layers, layout="layers", types=types)
    publish("vgg16-caffe", caffe_vgg.read_bytes())
    reference = random_fcn("fcn8s")
    publish("voc-fcn8s", caffemodel_bytes(reference, tmp_path))
    monkeypatch.setattr(registry, "WEIGHTS", tuple(entries.values()))
    return Published(vgg16, resnet, mobilenet, reference, entries)


def assert_zero_scores(model: torch.nn.Module) -> None:
    for name, layer in model.named_children():
        if name.startswith("score_"):
            assert not layer.weight.any() and not layer.bias.any(), name


@pytest.mark.parametrize("arch", ["fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce"])
def test_imagenet_vgg16_backbone(published, server, arch):
    model = create_model(arch, num_classes=21, width=WIDTH, weights_backbone="imagenet")
    backbone = model.backbone.state_dict()
    tv = published.vgg16
    torch.testing.assert_close(backbone["conv1_1.weight"], tv["features.0.weight"], rtol=0, atol=0)
    torch.testing.assert_close(backbone["conv5_3.bias"], tv["features.28.bias"], rtol=0, atol=0)
    fc6 = tv["classifier.0.weight"].reshape(backbone["fc6.weight"].shape)  # (O, C, 7, 7)
    torch.testing.assert_close(backbone["fc6.weight"], fc6, rtol=0, atol=0)
    assert_zero_scores(model)
    assert fcnseg.metadata_of(model).to_dict()["weights_backbone"] == "vgg16-imagenet"
    assert fcnseg.metadata_of(model).to_dict()["backbone_preprocessing"] == "imagenet"
    create_model(arch, num_classes=3, width=WIDTH, weights_backbone="vgg16-imagenet")  # cached
    assert len(server.requests) == 1


def test_caffe_vgg16_backbone_is_converted_once(published, server):
    model = fcnseg.fcn32s(num_classes=5, width=WIDTH, weights_backbone="vgg16-caffe")
    expected = from_torchvision_vgg16(published.vgg16)
    for key in ("conv1_1.weight", "conv3_2.bias", "fc6.weight", "fc7.weight"):
        torch.testing.assert_close(model.backbone.state_dict()[key], expected[key], rtol=0, atol=0)
    assert_zero_scores(model)
    converted = converted_path(published.entries["vgg16-caffe"])
    stamp = converted.stat().st_mtime_ns
    raw_path(published.entries["vgg16-caffe"]).unlink()  # the conversion is what is used
    fcnseg.fcn8s(num_classes=5, width=WIDTH, weights_backbone="vgg16-caffe")
    assert converted.stat().st_mtime_ns == stamp and len(server.requests) == 1


def test_imagenet_picks_the_caffe_vgg16_for_caffe_preprocessing(published):
    assert registry.imagenet_entry("fcn8s", "caffe").name == "vgg16-caffe"
    assert registry.imagenet_entry("fcn8s", "imagenet").name == "vgg16-imagenet"
    assert registry.imagenet_entry("fcn8s_resnet18", "caffe").name == "resnet18-imagenet"
    with pytest.raises(UnknownWeightsError, match="no ImageNet weights for 'fcn_googlenet'"):
        registry.imagenet_entry("fcn_googlenet")


def test_resnet_and_mobilenet_backbones(published):
    model = fcnseg.models.fcn8s_resnet18(num_classes=4, width=0.25, weights_backbone="imagenet")
    for key in ("conv1.weight", "layer4.1.bn2.running_var", "layer3.0.shortcut.0.weight"):
        if key in published.resnet18:
            torch.testing.assert_close(model.backbone.state_dict()[key], published.resnet18[key])
    torch.testing.assert_close(
        model.backbone.state_dict()["layer2.0.conv1.weight"],
        published.resnet18["layer2.0.conv1.weight"],
    )
    assert_zero_scores(model)
    mobile = fcnseg.models.fcn8s_mobilenet_v3_large(width=0.25, weights_backbone="imagenet")
    torch.testing.assert_close(
        mobile.backbone.state_dict()["16.0.weight"], published.mobilenet["features.16.0.weight"]
    )


def test_reference_fcn8s_whole_net(published, server):
    model = fcnseg.fcn8s(num_classes=21, width=WIDTH, weights="voc-fcn8s")
    reference = published.fcn8s
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    x = torch.randn(1, 3, 30, 34)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference(x), rtol=0, atol=0)
    assert fcnseg.metadata_of(model).to_dict()["classes"] == VOC_CLASSES
    assert fcnseg.metadata_of(model).to_dict()["preprocessing"]["type"] == "CaffeMeanSubtract"
    assert fcnseg.metadata_of(model).to_dict()["weights"] == "voc-fcn8s"
    entry = published.entries["voc-fcn8s"]
    assert converted_path(entry).is_file()
    recorded = hashlib.sha256(raw_path(entry).read_bytes()).hexdigest()
    assert checksum_status(entry) == f"unverified: sha256 {recorded} recorded on first download"
    again = fcnseg.fcn8s(num_classes=21, width=WIDTH, weights="voc-fcn8s", geometry="fast")
    torch.testing.assert_close(again.score_fr.weight, reference.score_fr.weight)
    assert len(server.requests) == 1
    assert entry.classes == VOC_CLASSES and len(entry.palette) == 21


def test_paths_work_wherever_names_do(published, tmp_path):
    vgg = tmp_path / "vgg16.pth"
    torch.save(published.vgg16, vgg)
    model = fcnseg.fcn16s(width=WIDTH, weights_backbone=vgg)
    torch.testing.assert_close(model.backbone.conv1_1.weight, published.vgg16["features.0.weight"])
    caffemodel = tmp_path / "mine.caffemodel"
    caffemodel.write_bytes(caffemodel_bytes(published.fcn8s, tmp_path))
    model = fcnseg.fcn8s(width=WIDTH, weights=str(caffemodel))
    torch.testing.assert_close(model.score_pool3.weight, published.fcn8s.score_pool3.weight)
    saved = fcnseg.save(model, tmp_path / "mine.pt")
    model = fcnseg.fcn8s(width=WIDTH, weights=saved)
    torch.testing.assert_close(model.upscore8.weight, published.fcn8s.upscore8.weight)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: fcnseg.fcn32s(width=WIDTH, weights="voc-fcn8s"), "holds an fcn8s with 21 classes"),
        (lambda: fcnseg.fcn8s(num_classes=5, width=WIDTH, weights="voc-fcn8s"), "num_classes=21"),
        (lambda: fcnseg.fcn8s(width=0.125, weights="voc-fcn8s"), "has shape"),
        (lambda: fcnseg.fcn8s(width=WIDTH, weights="imagenet"), "use weights_backbone='imagenet'"),
        (
            lambda: fcnseg.fcn8s(width=WIDTH, weights_backbone="voc-fcn8s"),
            "pass it as weights='voc-fcn8s'",
        ),
        (
            lambda: fcnseg.fcn8s(width=WIDTH, weights="voc-fcn8s", weights_backbone="imagenet"),
            "not both",
        ),
        (
            lambda: fcnseg.models.fcn8s_resnet18(width=0.25, weights_backbone="vgg16-imagenet"),
            "is a vgg16 classifier; fcn8s_resnet18's backbone is resnet18",
        ),
        (
            lambda: fcnseg.fcn8s(width=WIDTH, batch_norm=True, weights_backbone="imagenet"),
            "batch_norm=False",
        ),
        (lambda: fcnseg.models.fcn8s_resnet18(width=0.5, weights_backbone="imagenet"), "has shape"),
    ],
)
def test_weights_that_do_not_fit(published, build, message):
    with pytest.raises(WeightsError, match=message):
        build()


def test_unknown_name_lists_the_known(published):
    with pytest.raises(UnknownWeightsError, match="known: vgg16-imagenet, resnet18-imagenet"):
        fcnseg.fcn8s(width=WIDTH, weights="voc-fcn9s")


def test_changed_file_on_the_server_is_refused(published, server):
    entry = published.entries["vgg16-imagenet"]
    server.add(entry.url, b"not the published file")
    with pytest.raises(ChecksumError, match="does not match the expected sha256 prefix"):
        fcnseg.fcn32s(width=WIDTH, weights_backbone="imagenet")
    assert not raw_path(entry).exists()


def test_offline_build_names_url_and_path(published, monkeypatch):
    monkeypatch.setenv("FCNSEG_OFFLINE", "1")
    with pytest.raises(DownloadError) as caught:
        fcnseg.fcn8s(width=WIDTH, weights="voc-fcn8s")
    entry = published.entries["voc-fcn8s"]
    assert "/fcn8s-heavy-pascal.caffemodel" in str(caught.value)
    assert str(raw_path(entry)) in str(caught.value)


def test_hubconf_local(published):
    model = torch.hub.load(
        str(REPO), "fcn8s", source="local", num_classes=21, width=WIDTH, weights="voc-fcn8s"
    )
    torch.testing.assert_close(model.score_fr.bias, published.fcn8s.score_fr.bias)
    plain = torch.hub.load(str(REPO), "fcn32s", source="local", num_classes=3, width=WIDTH)
    assert plain.arch == "fcn32s" and "weights" not in getattr(plain, "meta", {})
    alexnet = torch.hub.load(str(REPO), "fcn_alexnet", source="local", width=WIDTH)
    assert alexnet.arch == "fcn_alexnet"


def test_cli_weights_list_download_path(published, capsys):
    assert cli.main(["weights", "download", "voc-fcn8s", "--quiet"]) == 0
    entry = published.entries["voc-fcn8s"]
    assert capsys.readouterr().out.strip() == f"voc-fcn8s: {converted_path(entry)}"
    assert cli.main(["weights", "path", "vgg16-imagenet", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(raw_path(published.entries["vgg16-imagenet"]))
    assert cli.main(["weights"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "converted" in lines["voc-fcn8s"] and "unverified: sha256" in lines["voc-fcn8s"]
    assert " cached " in lines["vgg16-imagenet"] and "sha256 prefix" in lines["vgg16-imagenet"]
    assert " - " in lines["vgg16-caffe"] and registry.UNVERIFIED in lines["vgg16-caffe"]


def test_cli_offline_is_one_line(published, monkeypatch, capsys):
    monkeypatch.setenv("FCNSEG_OFFLINE", "1")
    assert cli.main(["weights", "download", "vgg16-caffe"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "place it at" in err and "VGG_ILSVRC_16_layers" in err


def test_the_published_registry():
    entries = registry.WEIGHTS
    assert len({e.name for e in entries}) == len(entries)
    for entry in entries:
        if entry.format == "torchvision":
            assert entry.url.startswith("https://download.pytorch.org/models/")
            assert len(entry.checksum.hexdigest) == 8  # torchvision's hash prefix
        else:
            assert entry.checksum is None and entry.checksum_source == registry.UNVERIFIED
        if entry.fills == "net":
            assert entry.arch in list_models() and len(entry.classes) == entry.num_classes
            assert entry.url.startswith("http://dl.caffe.berkeleyvision.org/")
    assert {
        registry.imagenet_entry(arch).backbone
        for arch in registry.ARCH_BACKBONES
        if arch not in ("fcn_alexnet", "fcn_googlenet")
    } == {"vgg16", "resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_large"}


def test_recipe_init_names(published, caplog):
    from fcnseg.train.build import initialize

    model = fcnseg.fcn32s(num_classes=4, width=WIDTH)
    report = initialize(model, "imagenet", "caffe")  # the reference's start: the Caffe VGG16
    assert (report.kind, report.source) == ("imagenet", "vgg16-caffe")
    assert "backbone.fc7.weight" in report.copied and "score_fr.weight" in report.untouched
    expected = from_torchvision_vgg16(published.vgg16)["conv2_1.weight"]
    torch.testing.assert_close(model.backbone.conv2_1.weight, expected, rtol=0, atol=0)
    assert initialize(model, "imagenet", "imagenet").source == "vgg16-imagenet"
    with caplog.at_level("WARNING"):
        initialize(model, "vgg16-imagenet", "caffe")
    assert "vgg16-imagenet expects imagenet preprocessing, the recipe uses caffe" in caplog.text
    net = fcnseg.fcn8s(num_classes=21, width=WIDTH)
    report = initialize(net, "voc-fcn8s", "caffe")
    assert report.kind == "weights" and report.untouched == []
    torch.testing.assert_close(net.score_pool4.weight, published.fcn8s.score_pool4.weight)
    assert report.summary().startswith("init: weights voc-fcn8s: ")


def test_nyud_hha_net_records_the_hha_mean(hub_env, server, tmp_path, monkeypatch):
    net = random_fcn("fcn32s", num_classes=40)
    data = caffemodel_bytes(net, tmp_path)
    entry = dataclasses.replace(registry.find("nyud-fcn32s-hha"), size=len(data))
    server.add(entry.url, data)
    monkeypatch.setattr(registry, "WEIGHTS", (entry,))
    model = fcnseg.fcn32s(num_classes=40, width=WIDTH, weights="nyud-fcn32s-hha")
    assert (
        fcnseg.metadata_of(model).to_dict()["modality"] == "hha"
        and fcnseg.metadata_of(model).to_dict()["preprocessing"]["type"] == "Normalize"
    )
    assert (
        fcnseg.metadata_of(model).to_dict()["classes"][0] == "wall"
        and len(fcnseg.metadata_of(model).to_dict()["classes"]) == 40
    )
    torch.testing.assert_close(model.score_fr.weight, net.score_fr.weight, rtol=0, atol=0)


def test_a_file_that_is_not_the_registered_net(hub_env, server, tmp_path, monkeypatch):
    data = caffemodel_bytes(random_fcn("fcn32s"), tmp_path)  # an FCN-32s where FCN-8s is named
    entry = dataclasses.replace(registry.find("voc-fcn8s"), size=len(data))
    server.add(entry.url, data)
    junk = dataclasses.replace(registry.find("voc-fcn16s"), size=100)
    server.add(junk.url, b"\x08\x96\x01" * 33)  # not a NetParameter
    monkeypatch.setattr(registry, "WEIGHTS", (entry, junk))
    with pytest.raises(WeightsError, match="converts to fcn32s with 21 classes, the registry says"):
        fcnseg.fcn8s(width=WIDTH, weights="voc-fcn8s")
    assert not converted_path(entry).exists()
    with pytest.raises(WeightsError, match="voc-fcn16s: cannot convert .*fcn16s-heavy-pascal"):
        fcnseg.fcn16s(width=WIDTH, weights="voc-fcn16s")
    assert not converted_path(junk).exists()
