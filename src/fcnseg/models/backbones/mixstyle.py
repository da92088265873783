"""Mixed feature statistics in training (MixStyle, Zhou, Yang, Qiao & Xiang, ICLR 2021).

A shallow layer's per-image, per-channel mean and standard deviation carry an image's style:
its light, contrast and colour cast, which differ from one camera, day or sequence to the
next. MixStyle re-styles each training image with a random blend of its own statistics and
those of another image of the batch, so a net trained on a few sequences sees styles between
them; the content (each feature normalised by its image's statistics) is kept. It has no
weights, and outside training it passes its input through, so a net with it scores exactly as
one without it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fcnseg.models.geometry import IDENTITY, CoordMap

EPS = 1e-6  # added to the variance, as in the paper's code


class MixStyle(nn.Module):
    """In training, with probability ``p`` a batch: each image's features re-styled.

    ``forward(x: N x C x H x W) -> N x C x H x W``. With ``mu``, ``sigma`` an image's per-channel
    mean and standard deviation over H x W (``sqrt(biased variance + EPS)``) and ``j`` the image
    that a random permutation of the batch pairs with image ``i``:

        lam ~ Beta(alpha, alpha)                 one per image
        mu_mix = lam mu_i + (1 - lam) mu_j       sigma_mix likewise
        out_i = sigma_mix (x_i - mu_i) / sigma_i + mu_mix

    The statistics are treated as constants in the backward pass, as in the paper. Draws (from
    torch's global generator, which the trainer saves and restores): one number, then, when it
    mixes, the ``lam`` of each image and the permutation. In eval mode, for a batch of one, or
    when it does not mix, ``x`` itself is returned.
    """

    def __init__(self, p: float = 0.5, alpha: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p}")
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.p, self.alpha = float(p), float(alpha)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        if not self.training or n < 2 or torch.rand(1).item() >= self.p:
            return x
        concentration = torch.tensor(self.alpha, dtype=torch.float32)
        lam = torch.distributions.Beta(concentration, concentration).sample((n,))
        lam = lam.to(x.device, x.dtype).view(n, 1, 1, 1)
        partner = torch.randperm(n).to(x.device)
        with torch.no_grad():
            var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
            sigma = (var + EPS).sqrt()
            mixed_mean = torch.lerp(mean[partner], mean, lam)  # lam mu_i + (1 - lam) mu_j
            mixed_sigma = torch.lerp(sigma[partner], sigma, lam)
            scale = mixed_sigma / sigma
            shift = mixed_mean - mean * scale
        return torch.addcmul(shift, x, scale)

    def coord_map(self) -> CoordMap:
        """Every pixel stays where it is."""
        return IDENTITY

    def extra_repr(self) -> str:
        return f"p={self.p}, alpha={self.alpha}"
