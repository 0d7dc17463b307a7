"""Visually-guided audio source separation: the encoder plus a head that predicts a mel mask.

Two heads: ``official``, the official U-Net over per-block audio tokens (`avss_decoder`; compatible with
the official separation checkpoints, `encoder.*` and `avss_decoder.*`, no key map needed), and
``temporal`` (`temporal_decoder`, avfusion's, ``separation_temporal``), which reads the mixture frame by
frame at full resolution, conditioned by the fused image and fusion tokens.
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

#: The decoder upsamples the audio token grid by 2**4 = 16 to reach mel resolution.
UPSAMPLING = 16
#: Official epsilon in the ratio-mask denominator (not in the paper).
RATIO_MASK_EPS = 1e-5
HEADS = ("official", "temporal")
#: What the target mask compares the source with: the mixture (the official spec_mix forms) or the other
#: sources of the mixture (mix-and-separate knows them: the ideal ratio / binary masks).
MASK_REFERENCES = ("mixture", "sources")


def separation_blocks(depth: int) -> list[int]:
    """The 5 encoder blocks the decoder reads, from the finest decoder scale to the top:
    linspace(0, depth - 1, 5) reversed, e.g. [11, 8, 5, 2, 0] for 12 blocks, [2, 1, 1, 0, 0] for 3."""
    return evenly_spaced_blocks(depth, 5)[::-1]


class SeparationDecoder(nn.Module):
    """The official `avss_decoder`: audio tokens of 5 blocks -> mask logits at 16x the audio grid.

    Scale 5 (the top) works at the token grid, scale k < 5 at 2**(5-k) times it. At every scale the
    mean of the normalised last-block image tokens, projected by `cond{k}`, is tiled over the grid and
    concatenated (the visual condition). Channel widths halve per scale: D, D/2, D/4, D/8, D/16.
    """

    def __init__(self, embed_dim: int):
        super().__init__()
        if embed_dim % 16:
            raise ConfigError(f"the separation decoder halves the width 4 times and needs embed_dim divisible "
                              f"by 16, got {embed_dim}")
        d = embed_dim
        self.embed_dim = d
        self.xv_norm = nn.LayerNorm(d)
        self.xa_norm = nn.ModuleList([nn.LayerNorm(d) for _ in range(5)])
        self.cond5 = nn.Linear(d, d)
        self.cond4 = nn.Linear(d, d // 2)
        self.cond3 = nn.Linear(d, d // 4)
        self.cond2 = nn.Linear(d, d // 8)
        self.cond1 = nn.Linear(d, d // 16)
        self.top = DoubleConv(2 * d, d)
        # Lateral paths: audio tokens of one block, upsampled straight to their scale.
        self.lat4 = Up(d, d // 2, factor=2)
        self.lat3 = Up(d, d // 4, factor=4)
        self.lat2 = Up(d, d // 8, factor=8)
        self.lat1 = Up(d, d // 16, factor=16)
        # Decoder path: x2 per scale, skip = [lateral ; condition] (2 * width channels).
        self.up4 = Up(d, d // 2, skip_channels=d)
        self.up3 = Up(d // 2, d // 4, skip_channels=d // 2)
        self.up2 = Up(d // 4, d // 8, skip_channels=d // 4)
        self.up1 = Up(d // 8, d // 16, skip_channels=d // 8)
        self.pred = nn.Conv2d(d // 16, 1, kernel_size=3, padding=1)
        init_decoder_weights(self, zero_conv_bias=False)

    def forward(self, audio_layers: Sequence[torch.Tensor], image_last: torch.Tensor,
                audio_grid: tuple[int, int]) -> torch.Tensor:
        """audio_layers: per encoder block (B, Na, D) before the final norm; image_last: (B, Nv, D) image
        tokens of the last block before the final norm; audio_grid: (rows, cols) with rows*cols = Na.
        Returns mask logits (B, 1, rows*16, cols*16)."""
        gh, gw = audio_grid
        b = image_last.shape[0]
        blocks = separation_blocks(len(audio_layers))
        # audio[0] (deepest selected block) feeds the finest scale, audio[4] the top.
        audio = [norm(audio_layers[i]).reshape(b, gh, gw, -1).permute(0, 3, 1, 2)  # (B, D, gh, gw)
                 for norm, i in zip(self.xa_norm, blocks)]
        image = self.xv_norm(image_last).mean(dim=1)  # (B, D)

        x = self.top(torch.cat([audio[4], tile(self.cond5(image), (gh, gw))], dim=1))  # (B, D, gh, gw)
        stages = [(self.lat4, self.cond4, self.up4), (self.lat3, self.cond3, self.up3),
                  (self.lat2, self.cond2, self.up2), (self.lat1, self.cond1, self.up1)]
        for level, (lat, cond, up) in zip((3, 2, 1, 0), stages):
            f = 2 ** (4 - level)
            skip = torch.cat([lat(audio[level]), tile(cond(image), (gh * f, gw * f))], dim=1)
            x = up(x, skip)  # (B, D / f, gh * f, gw * f)
        return self.pred(x)  # (B, 1, gh * 16, gw * 16)


def separation_target(audio_mix: torch.Tensor, audio_target: torch.Tensor, binary_mask: bool,
                      audio_other: torch.Tensor | None = None) -> torch.Tensor:
    """Target mask from log10-mel inputs (B, 1, n_mels, T), with spec = 10**logmel and ref the mixture's
    spec (official) or, given `audio_other`, the other sources' spec:
    binary: spec > ref; ratio: spec / (spec + ref + 1e-5) clipped to [0, 1]."""
    spec = torch.pow(10.0, audio_target)
    ref = torch.pow(10.0, audio_mix if audio_other is None else audio_other)
    if binary_mask:
        return (spec > ref).to(audio_mix.dtype)
    return (spec / (spec + ref + RATIO_MASK_EPS)).clamp(0.0, 1.0)


def separation_loss(mask_logits: torch.Tensor, audio_mix: torch.Tensor, audio_target: torch.Tensor,
                    weighted_loss: bool, binary_mask: bool,
                    audio_other: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean BCE-with-logits against the target mask (`separation_target`), optionally weighted per bin by
    the mixture magnitude clamp(log1p(10**audio_mix), 1e-3, 10). Returns (loss, target mask)."""
    for name, other in (("target", audio_target), ("other sources", audio_other)):
        if other is not None and other.shape != audio_mix.shape:
            raise DataError(f"separation {name} of shape {tuple(other.shape)} does not match the mixture "
                            f"{tuple(audio_mix.shape)}; all must be log-mel spectrograms (B, 1, n_mels, T)")
    target = separation_target(audio_mix, audio_target, binary_mask, audio_other)
    weight = torch.log1p(torch.pow(10.0, audio_mix)).clamp(1e-3, 10.0) if weighted_loss else None
    return F.binary_cross_entropy_with_logits(mask_logits, target, weight), target


@dataclass
class SeparationOutput:
    mask_logits: torch.Tensor                  # (B, 1, n_mels, T)
    loss: torch.Tensor | None = None           # scalar, when a target was given
    target_mask: torch.Tensor | None = None    # (B, 1, n_mels, T), when a target was given


class Separator(AVModel):
    """Encoder + a mask head: separates the source seen in `image` from a log-mel mixture.

    head: "official" (`avss_decoder`) or "temporal" (`temporal_decoder`). With ``freeze_encoder`` the
    encoder gets no gradients and stays in eval mode (the temporal head can then read cached features).
    weighted_loss / binary_mask / mask_reference select the loss (see `separation_loss`; mask_reference "sources" needs the other
    sources' log-mel in `forward`). The official class defaults to (True, True, mixture) and its released
    recipe to (False, True, mixture).
    """

    task = "separate"

    def __init__(self, encoder: nn.Module, weighted_loss: bool = True, binary_mask: bool = False,
                 head: str = "official", mask_reference: str = "mixture", freeze_encoder: bool = False):
        super().__init__()
        if head not in HEADS or mask_reference not in MASK_REFERENCES:
            raise ConfigError(f"separation head must be one of {HEADS} (got {head!r}) and mask_reference one of "
                              f"{MASK_REFERENCES} (got {mask_reference!r})")
        self.weighted_loss = weighted_loss
        self.binary_mask = binary_mask
        self.head, self.mask_reference = head, mask_reference
        self.options = dict(weighted_loss=weighted_loss, binary_mask=binary_mask, head=head,
                            mask_reference=mask_reference, freeze_encoder=freeze_encoder)
        self.encoder = encoder
        self._freeze(freeze_encoder)
        if head == "temporal":
            from avfusion.models.separation_temporal import TemporalSeparationHead

            self.temporal_decoder = TemporalSeparationHead(encoder.embed_dim, encoder.config.audio_size[0])
            return
        patch = encoder.audio.patch_embed.patch_size
        if patch != UPSAMPLING:
            raise ConfigError(f"the separation decoder upsamples the audio grid x{UPSAMPLING}, so it needs audio "
                              f"patch size {UPSAMPLING} to predict a mel-resolution mask; got {patch}")
        self.avss_decoder = SeparationDecoder(encoder.embed_dim)

    def official_layout_conflict(self) -> str | None:
        return None if self.head == "official" else "its mask head is the temporal one (avfusion's)"

    def features(self, image: torch.Tensor, audio_mix: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What the temporal head reads of the encoder: (image tokens, fusion tokens) after the final norms."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            out = self.encoder(image, audio_mix)
        return out.image, out.fusion

    def forward(self, image: torch.Tensor, audio_mix: torch.Tensor, audio_target: torch.Tensor | None = None,
                audio_other: torch.Tensor | None = None,
                features: tuple[torch.Tensor, ...] | None = None) -> SeparationOutput:
        """image (B, 3, H, W), audio_mix / audio_target / audio_other log-mel (B, 1, n_mels, T).

        `features`: the temporal head's encoder features (`features(image, audio_mix)`) computed
        beforehand (a frozen encoder's, cached); the image is then not read."""
        if self.head == "temporal":
            image_tokens, fusion_tokens = features if features is not None else self.features(image, audio_mix)
            mask_logits = self.temporal_decoder(audio_mix, image_tokens, fusion_tokens)
        else:
            out = self.encoder(image, audio_mix, return_layers=True)
            mask_logits = self.avss_decoder([layer.audio for layer in out.layers], out.layers[-1].image,
                                            self.encoder.audio.grid_size)
        if audio_target is None:
            return SeparationOutput(mask_logits)
        if self.mask_reference == "sources" and audio_other is None:
            raise DataError("mask_reference 'sources' forms the target from the other sources: pass audio_other")
        other = audio_other if self.mask_reference == "sources" else None
        loss, target = separation_loss(mask_logits, audio_mix, audio_target, self.weighted_loss, self.binary_mask,
                                       other)
        return SeparationOutput(mask_logits, loss, target)
