"""Convolutional building blocks shared by the separation and segmentation decoders.

Module and parameter names follow the official checkpoints (`double_conv.{0,1,3,4}`, `up`, `conv`), so
that their state dicts load without a key map.
"""
from __future__ import annotations

import torch
from torch import nn


class DoubleConv(nn.Module):
    """Two (3x3 conv without bias -> BatchNorm -> ReLU) stages; spatial size is kept.

    (B, in_channels, H, W) -> (B, out_channels, H, W). `mid_channels` defaults to `out_channels`.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        super().__init__()
        mid_channels = mid_channels or out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Up(nn.Module):
    """Learned x`factor` upsampling (transposed conv, in -> in // factor channels), optionally
    concatenated with a skip input of `skip_channels`, then a DoubleConv to `out_channels`.

    (B, in, H, W) [, skip (B, skip_channels, H*f, W*f)] -> (B, out_channels, H*f, W*f).
    """

    def __init__(self, in_channels: int, out_channels: int, skip_channels: int = 0, factor: int = 2):
        super().__init__()
        self.factor = factor
        self.up = nn.ConvTranspose2d(in_channels, in_channels // factor, kernel_size=factor, stride=factor)
        self.conv = DoubleConv(in_channels // factor + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)  # (B, in // f + skip_channels, H*f, W*f)
        return self.conv(x)


def tile(vector: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C) -> (B, C, h, w): the same vector at every position (conditioning maps)."""
    return vector[:, :, None, None].expand(-1, -1, *size)


def evenly_spaced_blocks(depth: int, count: int) -> list[int]:
    """`count` block indices spread over 0..depth-1, truncated to integers.

    Equals numpy's `linspace(0, depth - 1, count).astype(int)` (the official selection) exactly:
    integer arithmetic avoids any float rounding at the boundaries.
    """
    if depth < 1 or count < 2:
        raise ValueError(f"need depth >= 1 and count >= 2, got depth={depth}, count={count}")
    return [(i * (depth - 1)) // (count - 1) for i in range(count)]


def init_decoder_weights(module: nn.Module, zero_conv_bias: bool) -> None:
    """The official decoder init: Xavier-uniform Linear (zero bias), Kaiming-normal (fan_out, ReLU)
    conv weights, unit/zero norms. The separation decoder keeps PyTorch's default conv biases
    (`zero_conv_bias=False`), the segmentation decoder zeroes them."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if zero_conv_bias and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
