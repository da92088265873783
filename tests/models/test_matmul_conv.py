"""MatmulConv2d: a convolution as one matrix multiply over its windows, with its own backward,
equal to Conv2d's outputs and gradients up to float rounding in every layout it meets."""

from __future__ import annotations

import pytest
import torch

import fcnseg
from fcnseg.models import matmul_conv
from fcnseg.models.matmul_conv import MATMUL_MIN_WEIGHTS, MatmulConv2d, matmul_convolutions

CASES = [  # kernel, stride, padding, dilation, bias
    (7, 1, 3, 1, True),  # fc6 in the fast geometry
    (7, 1, 0, 1, False),  # fc6 in the reference geometry
    (5, 2, 1, 1, True),
    (3, 1, 2, 2, True),
    (3, (2, 1), (0, 2), (1, 3), False),  # unequal strides, paddings and dilations per axis
    (1, 1, 0, 1, True),  # fc7
    (1, 1, 0, 1, False),
    (1, 2, 0, 1, True),
]


def _pair(kernel, stride, padding, dilation, bias, x_last, w_last):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 10, kernel, stride, padding, dilation, bias=bias).double()
    if w_last:
        conv.to(memory_format=torch.channels_last)
    x = torch.randn(3, 6, 13, 11, dtype=torch.float64)
    if x_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return conv, x.requires_grad_()


@pytest.mark.parametrize("kernel, stride, padding, dilation, bias", CASES)
@pytest.mark.parametrize("x_last, w_last", [(False, False), (True, True), (True, False)])
def test_matmul_convolution_equals_conv2d_forward_and_backward(
    kernel, stride, padding, dilation, bias, x_last, w_last
):
    conv, x = _pair(kernel, stride, padding, dilation, bias, x_last, w_last)
    params = [x, *conv.parameters()]
    expected = conv(x)
    upstream = torch.randn_like(expected)
    grads = torch.autograd.grad(expected, params, upstream)
    conv.__class__ = MatmulConv2d
    got = conv(x)
    assert got.shape == expected.shape
    assert got.is_contiguous(memory_format=torch.channels_last) == x_last
    assert got.is_contiguous() == (not x_last or got.shape[-2:] == (1, 1))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # every gradient, the bias's included, in float64: the same sums in another order
    for name, a, b in zip(
        ["x", "weight", "bias"], torch.autograd.grad(got, params, upstream), grads
    ):
        assert a.shape == b.shape, name
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)


def test_matmul_convolution_gradients_pass_gradcheck():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, (2, 1), (1, 2), (2, 1)).double()
    conv.__class__ = MatmulConv2d
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_matmul_convolution_with_frozen_weights_gives_only_the_input_gradient():
    conv, x = _pair(7, 1, 3, 1, True, True, True)
    conv.requires_grad_(False)
    conv.__class__ = MatmulConv2d
    conv(x).sum().backward()
    assert x.grad is not None and conv.weight.grad is None and conv.bias.grad is None


def test_matmul_convolution_on_float32_fc6_at_the_recipes_shape():
    # fc6 of the CamVid recipe: pool5 of 160 x 224 crops (5 x 7 cells), width 0.25
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(128, 1024, 7, padding=3, bias=False)
    conv.to(memory_format=torch.channels_last)
    x = torch.randn(8, 128, 5, 7).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    expected = conv(x)
    grads = torch.autograd.grad(expected.square().sum(), [x, conv.weight])
    conv.__class__ = MatmulConv2d
    got = conv(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    for a, b in zip(torch.autograd.grad(got.square().sum(), [x, conv.weight]), grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)


def test_matmul_threshold_takes_vgg16_fc6_and_fc7_only():
    fc6, fc7, conv5 = 4096 * 512 * 7 * 7, 4096 * 4096, 512 * 512 * 3 * 3
    assert fc6 > fc7 >= MATMUL_MIN_WEIGHTS > conv5
    # at the CamVid recipe's width 0.25, fc6 alone
    assert 1024 * 128 * 7 * 7 >= MATMUL_MIN_WEIGHTS > 1024 * 1024


def test_matmul_convolution_too_small_input_gives_conv2d_error():
    conv = torch.nn.Conv2d(4, 5, 9)
    conv.__class__ = MatmulConv2d
    with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input"):
        conv(torch.randn(1, 4, 5, 5))


def test_matmul_convolution_falls_back_to_conv2d_for_grouped_and_unbatched():
    torch.manual_seed(0)
    for conv, x in [
        (torch.nn.Conv2d(4, 6, 3, groups=2), torch.randn(2, 4, 8, 8)),
        (torch.nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect"), torch.randn(2, 4, 8, 8)),
        (torch.nn.Conv2d(4, 6, 3, padding="same"), torch.randn(2, 4, 8, 8)),
        (torch.nn.Conv2d(4, 6, 3), torch.randn(4, 8, 8)),  # no batch dimension
    ]:
        expected = conv(x)
        conv.__class__ = MatmulConv2d
        assert torch.equal(conv(x), expected)


def test_matmul_convolutions_swaps_the_recipe_nets_fc6_and_keeps_its_training_step():
    torch.manual_seed(0)
    net = fcnseg.models.fcn2s(num_classes=11, width=0.25, batch_norm=True, geometry="fast")
    net.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 96, 128).contiguous(memory_format=torch.channels_last)
    net.train()
    torch.manual_seed(1)
    expected = net(x)
    params = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    expected_grads = torch.autograd.grad(expected.square().mean(), [p for _, p in params])
    keys = {k: v.clone() for k, v in net.state_dict().items()}  # BN statistics updated
    assert matmul_convolutions(net) == 1  # fc6 (6.4 M weights); fc7 has 1 M
    assert type(net.backbone.fc6) is MatmulConv2d
    assert net.backbone.fc6.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.equal(v, keys[k]) for k, v in net.state_dict().items())
    torch.manual_seed(1)  # the same dropout masks
    got = net(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    grads = torch.autograd.grad(got.square().mean(), [p for _, p in params])
    for (name, _), a, b in zip(params, grads, expected_grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)
    assert matmul_convolutions(net, enable=False) == 1
    assert type(net.backbone.fc6) is torch.nn.Conv2d


def test_scoring_takes_one_images_windows_at_a_time_with_the_same_result(monkeypatch):
    conv, x = _pair(7, 1, 3, 1, True, True, True)
    x = x.detach()
    expected = conv(x)
    conv.__class__ = MatmulConv2d
    seen = []
    plain = matmul_conv._windows_times_kernels

    def spy(image, *args, **kwargs):
        seen.append(image.shape[0])
        return plain(image, *args, **kwargs)

    monkeypatch.setattr(matmul_conv, "_windows_times_kernels", spy)
    with torch.no_grad():
        got = conv(x)
    with torch.inference_mode():
        torch.testing.assert_close(conv(x), expected, rtol=1e-12, atol=1e-12)
    assert seen == [1] * (2 * len(x))  # one image each, in no_grad and in inference_mode
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert got.is_contiguous(memory_format=torch.channels_last)
    conv(x.requires_grad_())  # training: the whole batch at once
    assert seen[-1] == len(x)


def test_matmul_convolution_trains_under_bfloat16_autocast():
    conv, x = _pair(7, 1, 3, 1, True, True, True)
    conv.float()
    x = x.detach().float().requires_grad_()
    params = [x, *conv.parameters()]
    with torch.autocast("cpu", torch.bfloat16):
        expected = conv(x)
    expected_grads = torch.autograd.grad(expected.float().square().sum(), params)
    conv.__class__ = MatmulConv2d
    with torch.autocast("cpu", torch.bfloat16):
        got = conv(x)
    assert got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.float(), rtol=2e-2, atol=5e-2)
    grads = torch.autograd.grad(got.float().square().sum(), params)
    for name, a, b in zip(["x", "weight", "bias"], grads, expected_grads):
        assert a.dtype == b.dtype == torch.float32, name  # each input's own dtype
        scale = b.abs().max()
        torch.testing.assert_close(a / scale, b / scale, rtol=0, atol=3e-2, msg=name)
