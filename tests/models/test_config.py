"""Typed configs and the registry: a builder's keywords are its config's fields, one place."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import fcnseg
from fcnseg.models import (
    FCNConfig,
    LateFusionConfig,
    TwoHeadedConfig,
    UnknownModelError,
    VGG16FCNConfig,
    config_of,
    create_model,
    fcn8s,
    fcn8s_resnet18,
    get_builder,
    list_models,
    settings_of,
)


@pytest.mark.parametrize("name", list_models())
def test_builder_signature_is_its_config(name):
    builder = get_builder(name)
    fields = dataclasses.fields(builder.config_class)
    parameters = inspect.signature(builder).parameters
    assert list(parameters) == [f.name for f in fields]
    assert [p.default for p in parameters.values()] == [f.default for f in fields]
    assert list(parameters.values())[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(parameters.values())[1:])
    assert builder.__doc__ and builder.__name__ == name


def test_config_is_frozen_and_recorded_on_the_net():
    model = fcn8s(4, width=1 / 16, geometry="fast")
    assert model.arch == "fcn8s"
    assert config_of(model) == VGG16FCNConfig(num_classes=4, width=1 / 16, geometry="fast")
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.config.width = 1.0  # type: ignore[misc]
    again = fcn8s.from_config(dataclasses.replace(model.config, batch_norm=True))
    assert again.config.batch_norm and again.backbone.conv1_1 is not None
    assert settings_of(model) == {
        "num_classes": 4,
        "in_channels": 3,
        "width": 1 / 16,
        "learnable_upsampling": False,
        "batch_norm": False,
        "dropout": 0.5,
        "geometry": "fast",
        "instance_norm_stages": 0,
        "mixstyle_stages": 0,
        "global_context": False,
        "space_to_depth": 1,
        "fc6_kernel": 7,
    }


def test_bad_settings_name_the_builder_and_what_it_takes():
    with pytest.raises(TypeError, match=r"fcn8s_resnet18\(\): .*'batch_norm'.*it takes: num_cl"):
        fcn8s_resnet18(batch_norm=True)
    with pytest.raises(TypeError, match="takes a FCNConfig, got VGG16FCNConfig"):
        fcn8s_resnet18.from_config(VGG16FCNConfig())
    with pytest.raises(ValueError, match="width must be > 0, got 0"):
        fcn8s(width=0)
    with pytest.raises(ValueError, match="geometry 'wide' is not one of"):
        VGG16FCNConfig(geometry="wide")
    with pytest.raises(ValueError, match="branch 'fcn99s' is not one of fcn32s"):
        LateFusionConfig(branch="fcn99s")


def test_families_extend_the_shared_fields_without_repeating_them():
    assert issubclass(TwoHeadedConfig, VGG16FCNConfig) and issubclass(VGG16FCNConfig, FCNConfig)
    assert TwoHeadedConfig().num_classes == 33 and LateFusionConfig().num_classes == 40
    fusion = create_model("fcn_latefusion", num_classes=3, in_channels=5, width=1 / 16)
    # each branch is the VGG16 FCN of the shared settings, with its own input channels
    assert fusion.rgb.config == VGG16FCNConfig(num_classes=3, in_channels=3, width=1 / 16)
    assert fusion.hha.config == VGG16FCNConfig(num_classes=3, in_channels=2, width=1 / 16)


def test_registry_lists_and_creates_by_name():
    names = list_models()
    assert names[:4] == ["fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce"] and len(set(names)) == len(
        names
    )
    assert fcnseg.list_models() == names
    model = create_model("fcn16s_two_headed", width=1 / 16, num_geometric=2)
    assert model.arch == "fcn16s_two_headed" and model.num_classes == {
        "semantic": 33,
        "geometric": 2,
    }
    with pytest.raises(UnknownModelError, match="unknown net 'fcn99s'; known: fcn32s, fcn16s"):
        create_model("fcn99s")


def test_a_hand_made_net_has_no_config():
    model = fcnseg.FCN(fcn8s(width=1 / 16).backbone, 3)
    with pytest.raises(ValueError, match="FCN was not made by a builder"):
        config_of(model)
    with pytest.raises(ValueError, match="only nets from"):
        fcnseg.save(model, "unused.pt")
