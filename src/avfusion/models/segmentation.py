"""Audio-visual segmentation: an FPN-style decoder over per-block image tokens, conditioned on audio.

Compatible with the official segmentation checkpoints (`encoder.*`, `normv.*`, `proja.*`, `norma.*`,
`top.*`, `lat.*`, `up.*`, `predictor.*`), no key map needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avfusion.errors import ConfigError, DataError
from avfusion.models.base import AVModel
from avfusion.models.unet_parts import DoubleConv, Up, evenly_spaced_blocks, init_decoder_weights, tile

#: Upsampling of each decoder scale relative to the token grid; the predictor adds a final x2.
SCALES = (1, 2, 4, 8)
#: The official decoder's floor on its widths (``min_width``); the top stage assumes embed_dim >= it.
MIN_WIDTH = 128
#: Token grid -> logits: 8 (decoder) * 2 (predictor).
UPSAMPLING = 16


def segmentation_blocks(depth: int) -> list[int]:
    """The 4 encoder blocks the decoder reads, for scales 1, 2, 4, 8: linspace(0, depth - 1, 4) truncated,
    e.g. [0, 3, 7, 11] for 12 blocks. (Quirk: the shallowest block feeds the coarsest scale.)"""
    return evenly_spaced_blocks(depth, len(SCALES))


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """One class: mean BCE-with-logits, target (B, H, W) in [0, 1]. C classes: mean cross-entropy,
    target (B, H, W) class indices (-100 is ignored, PyTorch's default)."""
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise DataError(f"segmentation target of shape {tuple(target.shape)} does not match logits "
                        f"{tuple(logits.shape)}; expected (B, H, W) = {tuple(logits.shape[:1] + logits.shape[2:])}")
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype))
    if target.is_floating_point():
        raise DataError(f"a {logits.shape[1]}-class segmentation target must hold integer class indices, "
                        f"got dtype {target.dtype}")
    return F.cross_entropy(logits, target.long())


class Predictor(nn.Sequential):
    """The official predictor, conv 3x3 (in -> 128) -> bilinear x2 -> conv 3x3 (128 -> C), computed folded.

    Nothing non-linear sits between the two convolutions, and bilinear upsampling mixes pixels with the
    same weights in every channel (weights summing to 1), so it commutes with any per-pixel channel mix.
    The second conv is a sum over its 9 offsets of a channel mix, each shifted; folding each offset's
    mix into the first conv gives a conv (in -> 9C) at the low resolution, an upsampling of 9C channels
    instead of 128, and 9 shifted sums at the high one. The same function (to float rounding), the same
    parameters (``0.*``, ``2.*``, as the official checkpoints), gradients through them, and a 2.3x cheaper
    training step for an AV-Digits segmenter (the plain 128 -> 1 conv at image resolution ran at ~1
    GFLOP/s on CPU). With many classes (9C >= 128, e.g. AVSS's 71) folding would upsample more channels,
    not fewer, so the layers run as written (``plain``, also the reference in the tests).
    """

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 128):
        super().__init__(
            nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(hidden, num_classes, kernel_size=3, padding=1),
        )

    def plain(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)

    @property
    def folds(self) -> bool:
        """Whether the folded computation is the cheaper one: fewer than ``hidden`` channels to upsample."""
        second = self[2]
        return second.out_channels * second.kernel_size[0] * second.kernel_size[1] < second.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.folds:
            return self.plain(x)
        first, _, second = self
        c, k = second.out_channels, second.kernel_size[0] * second.kernel_size[1]
        mix = second.weight.flatten(2)  # (C, hidden, 9): the channel mix of each offset
        weight = torch.einsum("chk,hiyx->ckiyx", mix, first.weight).flatten(0, 1)  # (9C, in, 3, 3)
        bias = torch.einsum("chk,h->ck", mix, first.bias).flatten()  # (9C,)
        y = F.conv2d(x, weight, bias, padding=1)  # (B, 9C, H, W)
        y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        y = F.pad(y, (1, 1, 1, 1)).unflatten(1, (c, k))  # (B, C, 9, 2H + 2, 2W + 2), zero border
        h, w = y.shape[-2] - 2, y.shape[-1] - 2
        out = second.bias[None, :, None, None]
        for i in range(k):
            dy, dx = divmod(i, second.kernel_size[1])
            out = out + y[:, :, i, dy:dy + h, dx:dx + w]
        return out  # (B, C, 2H, 2W)


@dataclass
class SegmentationOutput:
    logits: torch.Tensor                   # (B, C, H, W) at image resolution
    loss: torch.Tensor | None = None       # scalar, when a target was given


class Segmenter(AVModel):
    """Encoder + segmentation decoder (official `AVSegmSimple`).

    Scale s in (1, 2, 4, 8) has width max(min_width, D // s) (official: min_width 128); its image map
    is block `segmentation_blocks[i]` normalised by `normv[i]` and upsampled (`lat`), its condition the
    mean over audio tokens of the last block of norma[i](proja[i](.)), tiled. The decoder path (`top`,
    `up`) doubles resolution per scale, the predictor doubles once more: logits at 16x the token grid.

    ``min_width`` below 128 lets the decoder shrink with a small encoder: at D = 128 the official floor
    keeps every scale 128 wide, and the decoder then costs ~50x the tiny encoder's pass (AV-Digits uses 32).
    """

    task = "segment"

    def __init__(self, encoder: nn.Module, num_classes: int = 1, min_width: int = MIN_WIDTH):
        super().__init__()
        d = encoder.embed_dim
        if min_width < 1:
            raise ConfigError(f"the segmentation decoder's min_width must be >= 1, got {min_width}")
        if d < min_width:
            raise ConfigError(f"the segmentation decoder needs embed_dim >= min_width {min_width} (its top stage "
                              f"concatenates the D-channel image map with a max({min_width}, D)-channel audio "
                              f"condition into 2*D channels); got embed_dim {d}")
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        patch = encoder.image.patch_embed.patch_size
        if patch != UPSAMPLING:
            raise ConfigError(f"the segmentation decoder upsamples the image grid x{UPSAMPLING}, so it needs image "
                              f"patch size {UPSAMPLING} to predict at image resolution; got {patch}")
        self.num_classes = num_classes
        self.options = dict(num_classes=num_classes, min_width=min_width)
        self.encoder = encoder
        widths = [max(min_width, d // s) for s in SCALES]
        self.normv = nn.ModuleList([nn.LayerNorm(d) for _ in SCALES])
        self.proja = nn.ModuleList([nn.Linear(d, w) for w in widths])
        self.norma = nn.ModuleList([nn.LayerNorm(w) for w in widths])
        self.top = DoubleConv(2 * d, d)
        self.lat = nn.ModuleList([Up(d, widths[i], factor=SCALES[i]) for i in range(1, len(SCALES))])
        # Skip = [lateral image map ; audio condition], both of the next scale's width.
        self.up = nn.ModuleList([Up(widths[i], widths[i + 1], skip_channels=2 * widths[i + 1])
                                 for i in range(len(SCALES) - 1)])
        self.predictor = Predictor(widths[-1], num_classes)
        for module in (self.normv, self.proja, self.norma, self.top, self.lat, self.up, self.predictor):
            init_decoder_weights(module, zero_conv_bias=True)

    def official_layout_conflict(self) -> str | None:
        floor = self.options["min_width"]
        return None if floor == MIN_WIDTH else f"its decoder has width floor {floor}, the official one {MIN_WIDTH}"

    def decode(self, image_layers: Sequence[torch.Tensor], audio_last: torch.Tensor,
               image_grid: tuple[int, int]) -> torch.Tensor:
        """image_layers: per encoder block (B, Nv, D) before the final norm; audio_last: (B, Na, D) audio
        tokens of the last block before the final norm. Returns logits (B, C, rows*16, cols*16)."""
        gh, gw = image_grid
        b = audio_last.shape[0]
        blocks = segmentation_blocks(len(image_layers))
        image = [norm(image_layers[i]).reshape(b, gh, gw, -1).permute(0, 3, 1, 2)  # (B, D, gh, gw)
                 for norm, i in zip(self.normv, blocks)]
        audio = [norm(proj(audio_last)).mean(dim=1) for norm, proj in zip(self.norma, self.proja)]  # (B, w_i)

        x = self.top(torch.cat([image[0], tile(audio[0], (gh, gw))], dim=1))  # (B, D, gh, gw)
        for i in range(1, len(SCALES)):
            lateral = self.lat[i - 1](image[i])  # (B, w_i, gh * s_i, gw * s_i)
            skip = torch.cat([lateral, tile(audio[i], tuple(lateral.shape[2:]))], dim=1)
            x = self.up[i - 1](x, skip)  # (B, w_i, gh * s_i, gw * s_i)
        return self.predictor(x)  # (B, C, gh * 16, gw * 16)

    def forward(self, image: torch.Tensor, audio: torch.Tensor,
                target: torch.Tensor | None = None) -> SegmentationOutput:
        """image (B, 3, H, W), audio log-mel (B, 1, n_mels, T), target (B, H, W) (float for 1 class,
        class indices otherwise)."""
        out = self.encoder(image, audio, return_layers=True)
        logits = self.decode([layer.image for layer in out.layers], out.layers[-1].audio,
                             self.encoder.image.grid_size)
        if target is None:
            return SegmentationOutput(logits)
        return SegmentationOutput(logits, segmentation_loss(logits, target))
