"""Instance and batch normalisation side by side (IBN-Net, Pan et al., ECCV 2018).

IBN-Net normalises half of the channels of a net's shallow layers by the statistics of the
image itself (instance normalisation) and the other half by those of the training batch
(BatchNorm). The instance half forgets an image's light and contrast, which differ from one
camera, day or sequence to the next; the batch half keeps what tells classes apart. The paper
puts it in the shallow stages only, where appearance lives, and leaves the deep ones as they
are.

At test time the instance half still uses each image's own statistics (there is nothing to
learn or freeze), so the net's output on one image depends on that whole image, as BatchNorm
in training mode makes it depend on the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fcnseg.models.geometry import IDENTITY, CoordMap

EPS = 1e-5  # the epsilon of nn.BatchNorm2d and nn.InstanceNorm2d


class InstanceBatchNorm(nn.Module):
    """Instance normalisation of the first ``instance_channels`` channels, BatchNorm of the rest.

    ``forward(x: N x C x H x W) -> N x C x H x W``. The first ``instance_channels`` channels are
    normalised by each image's mean and (biased) variance over H x W, in training and at test
    time alike; the others as ``nn.BatchNorm2d`` normalises them: by the batch's statistics over
    N x H x W in training, which update ``running_mean`` and ``running_var`` (momentum 0.1,
    the unbiased variance), and by those at test time. ``weight`` and ``bias`` (1 and 0 at start)
    scale and shift every channel afterwards.

    Both halves come from one pass over ``x`` (each image's per-channel moments; a channel's
    batch moments are the mean of its images') and one multiply-add, without slicing ``x``,
    which keeps the activations and their gradients in the memory order they arrive in.
    """

    def __init__(self, channels: int, instance_channels: int, momentum: float = 0.1) -> None:
        super().__init__()
        if not 0 < instance_channels < channels:
            raise ValueError(
                f"instance_channels must be in 1 .. {channels - 1} of {channels} channels, "
                f"got {instance_channels}"
            )
        self.instance_channels = instance_channels
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels - instance_channels))
        self.register_buffer("running_var", torch.ones(channels - instance_channels))

    def forward(self, x: Tensor) -> Tensor:
        k, n = self.instance_channels, x.shape[0]
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)  # N x C x 1 x 1
        if self.training:
            # the batch's moments of each BatchNorm channel from its images' moments
            batch_mean = mean[:, k:].mean(0, keepdim=True)
            batch_var = (var[:, k:] + mean[:, k:].square()).mean(0, keepdim=True)
            batch_var = batch_var - batch_mean.square()
            with torch.no_grad():
                count = n * x.shape[2] * x.shape[3]
                unbiased = batch_var.flatten() * (count / max(count - 1, 1))
                self.running_mean.lerp_(batch_mean.flatten(), self.momentum)
                self.running_var.lerp_(unbiased, self.momentum)
        else:
            batch_mean = self.running_mean.view(1, -1, 1, 1)
            batch_var = self.running_var.view(1, -1, 1, 1)
        shape = (n, -1, 1, 1)
        mean = torch.cat((mean[:, :k], batch_mean.expand(shape)), dim=1)
        var = torch.cat((var[:, :k], batch_var.expand(shape)), dim=1)
        scale = self.weight.view(1, -1, 1, 1) * torch.rsqrt(var + EPS)
        return torch.addcmul(self.bias.view(1, -1, 1, 1) - mean * scale, x, scale)

    def coord_map(self) -> CoordMap:
        """Every pixel stays where it is."""
        return IDENTITY

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, instance_channels={self.instance_channels}"
