"""Tiny PyTorch models for the export tests: factories named in test specs as
`tests.unit.export.factories:<function>`. Weights are seeded, so every call gives one model."""

from __future__ import annotations

import torch
from torch import nn


def _seeded(build: type[nn.Module]) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build()


class _Upscale(nn.Module):
    """[B, 1, H, W] -> [B, 1, 2H, 2W]: a 3x3 conv to 4 channels, then a pixel shuffle."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class _BatchInReshape(_Upscale):
    """Reshapes to the example's batch of 2: `reshape(2, C*H*W)` bakes the batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y.reshape(2, y.shape[1] * y.shape[2] * y.shape[3])


class _BatchAsInt(_Upscale):
    """`int(y.shape[0])`: PyTorch runs any batch, a traced export holds the example's batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y.reshape(int(y.shape[0]), -1)


class _HeightInLinear(nn.Module):
    """A Linear over the height axis (in_features 8): the height is fixed to 8."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.transpose(2, 3)).transpose(2, 3)


def upscale() -> nn.Module:
    return _seeded(_Upscale)


def batch_in_reshape() -> nn.Module:
    return _seeded(_BatchInReshape)


def batch_as_int() -> nn.Module:
    return _seeded(_BatchAsInt)


def height_in_linear() -> nn.Module:
    return _seeded(_HeightInLinear)


def not_a_module() -> str:
    return "not a module"
