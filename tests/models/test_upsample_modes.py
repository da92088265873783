"""Regression: a net scored under ``torch.inference_mode`` still trains afterwards.

``BilinearUpsample`` used to cache its per-class kernel across modes; a kernel made under
inference mode then broke every later forward with gradients ("Inference tensors cannot be
saved for backward"). The default layer is now a plain ``ConvTranspose2d``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fcnseg
from fcnseg.data.transforms import ImageNetNormalize
from fcnseg.inference.predict import predict_image
from fcnseg.models.upsample import BilinearUpsample


@pytest.mark.parametrize("arch", ["fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce"])
@pytest.mark.parametrize("learnable", [False, True])
def test_inference_then_a_training_step(arch, learnable):
    model = fcnseg.models.create_model(
        arch, num_classes=3, width=1 / 16, learnable_upsampling=learnable
    )
    layers = [m for m in model.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert layers and all(type(m) is BilinearUpsample for m in layers)  # plain modules
    image = torch.rand(3, 29, 31) * 255
    first = predict_image(model, image, ImageNetNormalize())  # runs under inference_mode
    with torch.inference_mode():
        model.eval()(torch.randn(1, 3, 29, 31))
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, labels = torch.randn(2, 3, 29, 31), torch.randint(0, 3, (2, 29, 31))
    for _ in range(2):
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()  # raised "Inference tensors cannot be saved for backward" before
        optimizer.step()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    upsampling = [m.weight for m in layers]
    assert all(w.requires_grad == learnable for w in upsampling)
    if learnable:
        assert all(w.grad is not None for w in upsampling)
    # and inference still works after training
    assert predict_image(model, image, ImageNetNormalize()).shape == first.shape
