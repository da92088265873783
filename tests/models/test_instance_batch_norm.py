"""IBN-Net's half instance, half batch normalisation, and the VGG16 FCNs built with it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fcnseg import checkpoint
from fcnseg.models import get_builder
from fcnseg.models.backbones.ibn import InstanceBatchNorm


def _pair(channels: int = 6, instance: int = 2) -> tuple[InstanceBatchNorm, nn.BatchNorm2d]:
    torch.manual_seed(0)
    ibn = InstanceBatchNorm(channels, instance)
    with torch.no_grad():
        ibn.weight.uniform_(0.5, 2.0)
        ibn.bias.uniform_(-1.0, 1.0)
    bn = nn.BatchNorm2d(channels - instance)
    with torch.no_grad():
        bn.weight.copy_(ibn.weight[instance:])
        bn.bias.copy_(ibn.bias[instance:])
    return ibn, bn


def _instance_half(ibn: InstanceBatchNorm, x: torch.Tensor) -> torch.Tensor:
    k = ibn.instance_channels
    w, b = ibn.weight[:k], ibn.bias[:k]
    return F.instance_norm(x[:, :k], weight=w, bias=b, eps=1e-5)


def test_the_first_channels_are_instance_normalised_the_rest_batch_normalised() -> None:
    ibn, bn = _pair()
    x = torch.randn(4, 6, 7, 9) * 3 + 2
    y = ibn(x)
    torch.testing.assert_close(y[:, :2], _instance_half(ibn, x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[:, 2:], bn(x[:, 2:]), atol=1e-5, rtol=1e-5)
    # the running statistics follow nn.BatchNorm2d's (unbiased variance, momentum 0.1)
    torch.testing.assert_close(ibn.running_mean, bn.running_mean)
    torch.testing.assert_close(ibn.running_var, bn.running_var)


def test_at_test_time_the_instance_half_still_uses_the_image_and_the_rest_running_stats() -> None:
    ibn, bn = _pair()
    for _ in range(3):
        batch = torch.randn(4, 6, 5, 5) * 2 - 1
        ibn(batch)
        bn(batch[:, 2:])
    ibn.eval()
    bn.eval()
    x = torch.randn(2, 6, 8, 8) * 5 + 3
    y = ibn(x)
    torch.testing.assert_close(y[:, :2], _instance_half(ibn, x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[:, 2:], bn(x[:, 2:]), atol=1e-5, rtol=1e-5)
    # each image on its own: the output of one image does not depend on the others
    torch.testing.assert_close(ibn(x[:1]), y[:1], atol=1e-5, rtol=1e-5)


def test_the_instance_half_forgets_an_images_brightness_and_contrast() -> None:
    ibn, _ = _pair()
    ibn.eval()
    x = torch.randn(1, 6, 10, 10)
    brighter = ibn(x * 2.5 + 4)
    torch.testing.assert_close(brighter[:, :2], ibn(x)[:, :2], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(brighter[:, 2:], ibn(x)[:, 2:], atol=1e-2)


def test_gradients_match_the_two_torch_layers() -> None:
    ibn, bn = _pair()
    x = torch.randn(3, 6, 6, 7, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    g = torch.randn(3, 6, 6, 7)
    (ibn(x) * g).sum().backward()
    reference = torch.cat((_instance_half(ibn, x_ref), bn(x_ref[:, 2:])), dim=1)
    (reference * g).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ibn.weight.grad[2:], bn.weight.grad, atol=1e-4, rtol=1e-4)


def test_channels_last_stays_channels_last() -> None:
    ibn, _ = _pair()
    x = torch.randn(2, 6, 5, 7).to(memory_format=torch.channels_last)
    assert ibn(x).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("instance", [0, 6, 7])
def test_a_half_that_is_not_a_proper_part_is_refused(instance: int) -> None:
    with pytest.raises(ValueError, match="instance_channels must be in 1 .. 5 of 6"):
        InstanceBatchNorm(6, instance)


def _net(stages: int, **settings: object) -> nn.Module:
    return get_builder("fcn8s")(
        num_classes=3,
        width=1 / 16,
        batch_norm=True,
        geometry="fast",
        instance_norm_stages=stages,
        **settings,
    )


def test_the_vgg16_fcns_put_it_in_the_first_stages_only() -> None:
    net = _net(3)
    kinds = {
        name: type(layer).__name__
        for name, layer in net.backbone.named_children()
        if name.endswith("_bn")
    }
    assert {kinds[f"conv{s}_1_bn"] for s in (1, 2, 3)} == {"InstanceBatchNorm"}
    assert kinds["conv3_3_bn"] == "InstanceBatchNorm"
    assert {kinds["conv4_1_bn"], kinds["conv5_3_bn"], kinds["fc7_bn"]} == {"BatchNorm2d"}
    assert net.backbone.conv2_2_bn.instance_channels == 4  # half of conv2's 8 channels
    out = net(torch.randn(2, 3, 45, 61))
    assert out.shape == (2, 3, 45, 61)
    # the geometry is that of the plain net: IBN keeps every pixel where it is
    assert net.backbone.coord_map("pool3") == _net(0).backbone.coord_map("pool3")


def test_a_checkpoint_rebuilds_the_ibn_net(tmp_path) -> None:
    net = _net(2).eval()
    path = tmp_path / "ibn.pt"
    checkpoint.save(net, path)
    loaded = checkpoint.load(path)
    x = torch.randn(1, 3, 40, 52)
    torch.testing.assert_close(loaded(x), net(x))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"instance_norm_stages": 6}, "instance_norm_stages must be in 0 .. 5, got 6"),
        ({"instance_norm_stages": 2, "batch_norm": False}, "needs batch_norm"),
    ],
)
def test_bad_settings_are_refused(settings: dict, message: str) -> None:
    given = {"num_classes": 3, "width": 1 / 16, "batch_norm": True, "geometry": "fast"}
    with pytest.raises(ValueError, match=message):
        get_builder("fcn8s")(**{**given, **settings})
