"""ESPCN x2, the super-resolution network: a sub-pixel CNN on the luma over a learned linear
upscale that starts as PIL's bicubic. Only torch: the export cache hashes this module, so
training and evaluation code (examples.model_zoo.super_resolution) live apart from it.
"""

from __future__ import annotations

import torch
from torch import nn

from tritonkit.processing import super_resolution as sr

SCALE = sr.SCALE
SKIP_KERNEL = 5  # the learned linear upscale (bicubic at the start)


def _cubic(distance: float, a: float = -0.5) -> float:
    """Keys' cubic convolution kernel (a = -0.5: PIL's BICUBIC)."""
    d = abs(distance)
    if d <= 1:
        return (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1
    if d < 2:
        return a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a
    return 0.0


def bicubic_phases(size: int) -> torch.Tensor:
    """Weights [SCALE**2, 1, size, size] of a conv whose PixelShuffle is the bicubic x2 upscale
    (half-pixel centres, as PIL): output pixel SCALE*i + p samples the input at i + (p + 0.5) /
    SCALE - 0.5."""
    centre = size // 2
    taps = []
    for phase in range(SCALE):
        offset = (phase + 0.5) / SCALE - 0.5
        taps.append([_cubic(k - centre - offset) for k in range(size)])
    rows = torch.tensor(taps, dtype=torch.float64)
    rows = rows / rows.sum(dim=1, keepdim=True)
    kernels = [torch.outer(rows[py], rows[px]) for py in range(SCALE) for px in range(SCALE)]
    return torch.stack(kernels)[:, None].to(torch.float32)


class ESPCN(nn.Module):
    """A sub-pixel CNN over a learned linear upscale, both on the LR grid, then
    PixelShuffle(2) and a clamp to [0, 1].

    body: conv5x5 1->features, tanh, conv3x3 ->hidden, tanh, conv3x3 ->4 (zero-initialised);
    skip: conv5x5 1->4 initialised to the bicubic x2 phases, so training starts at bicubic.
    [N, 1, H, W] luma in [0, 1] -> [N, 1, 2H, 2W]; batch, height and width are dynamic.
    """

    def __init__(self, features: int = 32, hidden: int = 32) -> None:
        super().__init__()
        channels = SCALE * SCALE
        self.body = nn.Sequential(
            nn.Conv2d(1, features, kernel_size=5, padding=2), nn.Tanh(),
            nn.Conv2d(features, hidden, kernel_size=3, padding=1), nn.Tanh(),
            nn.Conv2d(hidden, channels, kernel_size=3, padding=1),
        )
        self.skip = nn.Conv2d(1, channels, kernel_size=SKIP_KERNEL, padding=SKIP_KERNEL // 2,
                              bias=False)
        self.shuffle = nn.PixelShuffle(SCALE)
        last = self.body[-1]
        assert isinstance(last, nn.Conv2d)
        with torch.no_grad():
            nn.init.zeros_(last.weight)
            if last.bias is not None:
                nn.init.zeros_(last.bias)
            self.skip.weight.copy_(bicubic_phases(SKIP_KERNEL))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.shuffle(self.body(x) + self.skip(x)), 0.0, 1.0)


def espcn_x2() -> nn.Module:
    """An untrained ESPCN x2 (the architecture espcn_x2.pt's state_dict belongs to)."""
    return ESPCN()
