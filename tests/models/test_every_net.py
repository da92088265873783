"""The same checks over every registered net (as segmentation_models_pytorch's base test class).

Each net of :func:`fcnseg.models.list_models` is built tiny (``width=1/16``, 3 classes) and
must: give one score per class and pixel at two odd input sizes; carry the reference's layer
names; come back equal through ``fcnseg.save`` / ``fcnseg.load`` (weights, config, metadata,
outputs); trace with ``torch.jit.trace`` at one size and match the eager net at another; and
give the same output twice in eval mode. A new net in the registry is checked without an edit
here, except that its reference layer names must be added to ``REFERENCE_NAMES``.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import Tensor, nn

import fcnseg
from fcnseg.metadata import Metadata
from fcnseg.models import config_of, create_model, list_models

WIDTH = 1 / 16
NUM_CLASSES = 3
SIZES = ((33, 47), (21, 18))  # (H, W): odd, non-square, not multiples of any stride

# State-dict entries each net must have: the reference (Caffe) names of its score layers and
# upsamplings, and of its backbone's first and last layers.
_VGG = ("backbone.conv1_1.weight", "backbone.fc6.weight", "backbone.fc7.weight")
_FCN8S = ("score_fr", "score_pool4", "score_pool3", "upscore2", "upscore_pool4", "upscore8")
_RESNET = ("score_fr", "score_layer3", "score_layer2", "upscore2", "upscore_layer3", "upscore8")
_TWO_HEADED_8S = tuple(f"{name}{suffix}" for name in _FCN8S for suffix in ("_sem", "_geo"))
REFERENCE_NAMES: dict[str, tuple[str, ...]] = {
    "fcn32s": (*_VGG, "score_fr", "upscore"),
    "fcn16s": (*_VGG, "score_fr", "score_pool4", "upscore2", "upscore16"),
    "fcn8s": (*_VGG, *_FCN8S),
    "fcn4s": (*_VGG, *_FCN8S[:-1], "score_pool2", "upscore_pool3", "upscore4"),
    "fcn2s": (
        *_VGG,
        *_FCN8S[:-1],
        "score_pool2",
        "upscore_pool3",
        "score_pool1",
        "upscore_pool2",
        "upscore_pool1",
    ),  # fmt: skip
    "fcn8s_atonce": (*_VGG, *_FCN8S, "scale_pool4", "scale_pool3"),
    "fcn_alexnet": ("backbone.conv1.weight", "backbone.fc7.weight", "score_fr", "upscore"),
    "fcn_googlenet": ("backbone.conv1_7x7_s2.weight", "backbone.inception_5b", "score_fr"),
    "fcn8s_resnet18": ("backbone.conv1.weight", "backbone.layer4", *_RESNET),
    "fcn8s_resnet34": ("backbone.conv1.weight", "backbone.layer4", *_RESNET),
    "fcn8s_resnet50": ("backbone.conv1.weight", "backbone.layer4", *_RESNET),
    "fcn8s_resnet101": ("backbone.conv1.weight", "backbone.layer4", *_RESNET),
    "fcn8s_mobilenet_v3_large": (
        "score_fr",
        "score_features_12",
        "score_features_6",
        "upscore2",
        "upscore_features_12",
        "upscore8",
    ),
    "fcn_latefusion": tuple(
        f"{branch}.{name}" for branch in ("rgb", "hha") for name in (*_VGG, "score_fr", "upscore")
    ),
    "fcn32s_two_headed": (*_VGG, "score_fr_sem", "upscore_sem", "score_fr_geo", "upscore_geo"),
    "fcn16s_two_headed": (
        *_VGG,
        *(
            f"{n}{s}"
            for n in ("score_fr", "score_pool4", "upscore2", "upscore16")
            for s in "_sem _geo".split()
        ),
    ),
    "fcn8s_two_headed": (*_VGG, *_TWO_HEADED_8S),
}


def _outputs(out: Tensor | dict[str, Tensor]) -> dict[str, Tensor]:
    """A net's output as a dict: two-headed nets return one, the others one tensor."""
    return out if isinstance(out, dict) else {"scores": out}


def _randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere (score layers are zero as built, which would hide errors)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
            elif value.is_floating_point() and not key.split(".")[-1].startswith("scale_"):
                value.copy_(torch.randn(value.shape, generator=generator) * 0.1)
    return model


def _input(model: nn.Module, size: tuple[int, int], batch: int = 1, seed: int = 1) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, config_of(model).in_channels, *size, generator=generator)


def _class_counts(model: nn.Module) -> dict[str, int]:
    config = config_of(model)
    if hasattr(config, "num_geometric"):
        return {"semantic": config.num_classes, "geometric": config.num_geometric}
    return {"scores": config.num_classes}


@pytest.fixture(scope="module", params=list_models())
def net(request) -> nn.Module:
    return _randomized(create_model(request.param, num_classes=NUM_CLASSES, width=WIDTH)).eval()


class TestEveryNet:
    def test_the_table_names_every_registered_net(self):
        assert sorted(REFERENCE_NAMES) == sorted(list_models())

    @pytest.mark.parametrize("size", SIZES)
    def test_one_score_per_class_and_pixel(self, net, size):
        with torch.no_grad():
            out = _outputs(net(_input(net, size, batch=2)))
        assert {key: tuple(value.shape) for key, value in out.items()} == {
            key: (2, count, *size) for key, count in _class_counts(net).items()
        }
        assert all(torch.isfinite(value).all() for value in out.values())

    def test_reference_layer_names(self, net):
        keys = list(net.state_dict())
        missing = [
            name
            for name in REFERENCE_NAMES[net.arch]
            if not any(key == name or key.startswith(f"{name}.") for key in keys)
        ]
        assert not missing, f"{net.arch} lacks {missing}"

    def test_save_load_round_trip(self, net, tmp_path):
        meta = {"classes": [f"c{i}" for i in range(NUM_CLASSES)], "dataset": "folder"}
        loaded = fcnseg.load(fcnseg.save(net, tmp_path / "net.pt", **meta)).eval()
        assert type(loaded) is type(net) and loaded.arch == net.arch
        assert loaded.config == net.config and dataclasses.is_dataclass(loaded.config)
        assert fcnseg.metadata_of(loaded) == Metadata(classes=("c0", "c1", "c2"), dataset="folder")
        state, again = net.state_dict(), loaded.state_dict()
        assert list(again) == list(state)
        assert all(torch.equal(again[key], state[key]) for key in state)
        x = _input(net, SIZES[0])
        with torch.no_grad():
            expected, got = _outputs(net(x)), _outputs(loaded(x))
        assert all(torch.equal(got[key], expected[key]) for key in expected)

    # the crops' size arithmetic is recorded as constants, which _overlap makes right anyway
    @pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
    def test_trace_at_one_size_runs_at_another(self, net):
        with torch.no_grad():
            traced = torch.jit.trace(net, _input(net, SIZES[0]), strict=False)
            x = _input(net, SIZES[1], seed=2)
            expected, got = _outputs(net(x)), _outputs(traced(x))
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-5)

    def test_eval_mode_is_deterministic(self, net):
        x = _input(net, SIZES[1])
        with torch.no_grad():
            first, second = _outputs(net(x)), _outputs(net(x))
        assert all(torch.equal(first[key], second[key]) for key in first)
