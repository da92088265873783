"""FCN-8s on VGG16 written the obvious way: the in-process baseline of benchmarks/bench_speed.py.

One flat nn.Module with the reference (Caffe) layer names, 100-pixel padding on conv1_1, dense
K x K bilinear deconvolutions, and the reference crops typed in (5, 9, 31) as torchfcn does.
Its state dict has torchfcn's keys, so ``torchfcn_port.from_torchfcn`` maps it onto our fcn8s
and ``to_torchfcn`` maps ours onto it; on the same weights both give the same scores.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

VGG_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (channels, convolutions)


def _bilinear(channels: int, kernel: int) -> Tensor:
    factor = (kernel + 1) // 2
    center = factor - 0.5 if kernel % 2 == 0 else factor - 1
    taps = 1 - (torch.arange(kernel, dtype=torch.float64) - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel, kernel)
    weight[range(channels), range(channels)] = torch.outer(taps, taps).float()
    return weight


class PlainFCN8s(nn.Module):
    def __init__(self, num_classes: int = 21, in_channels: int = 3) -> None:
        super().__init__()
        channels = in_channels
        for block, (width, convs) in enumerate(VGG_BLOCKS, start=1):
            for i in range(1, convs + 1):
                padding = 100 if (block, i) == (1, 1) else 1
                self.add_module(f"conv{block}_{i}", nn.Conv2d(channels, width, 3, padding=padding))
                channels = width
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.drop = nn.Dropout2d(0.5)
        self.score_fr = nn.Conv2d(4096, num_classes, 1)
        self.score_pool4 = nn.Conv2d(512, num_classes, 1)
        self.score_pool3 = nn.Conv2d(256, num_classes, 1)
        self.upscore2 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(num_classes, num_classes, 16, 8, bias=False)
        for up in (self.upscore2, self.upscore_pool4, self.upscore8):
            up.weight.data.copy_(_bilinear(num_classes, up.kernel_size[0]))
            up.weight.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        h = x
        pools = []
        for block, (_, convs) in enumerate(VGG_BLOCKS, start=1):
            for i in range(1, convs + 1):
                h = torch.relu(getattr(self, f"conv{block}_{i}")(h))
            h = nn.functional.max_pool2d(h, 2, 2, ceil_mode=True)
            pools.append(h)
        pool3, pool4 = pools[2], pools[3]
        h = self.drop(torch.relu(self.fc6(h)))
        h = self.drop(torch.relu(self.fc7(h)))
        h = self.upscore2(self.score_fr(h))
        p4 = self.score_pool4(pool4)[:, :, 5 : 5 + h.shape[2], 5 : 5 + h.shape[3]]
        h = self.upscore_pool4(h + p4)
        p3 = self.score_pool3(pool3)[:, :, 9 : 9 + h.shape[2], 9 : 9 + h.shape[3]]
        h = self.upscore8(h + p3)
        return h[:, :, 31 : 31 + x.shape[2], 31 : 31 + x.shape[3]].contiguous()
