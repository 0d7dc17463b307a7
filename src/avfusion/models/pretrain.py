"""AV-MAE: masked reconstruction of image patches and spectrogram patches through the fused encoder."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from avfusion.models.base import AVModel
from avfusion.models.encoder import EarlyFusionEncoder
from avfusion.models.layers import Block, init_linear_and_norm, sincos_pos_embed_2d


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, gh*gw, p*p*C); values ordered (row-in-patch, column-in-patch, channel)."""
    B, C, H, W = x.shape
    p = patch_size
    x = x.reshape(B, C, H // p, p, W // p, p)
    return torch.einsum("bchpwq->bhwpqc", x).reshape(B, (H // p) * (W // p), p * p * C)


def unpatchify(x: torch.Tensor, patch_size: int, grid_size: tuple[int, int], channels: int) -> torch.Tensor:
    """Inverse of `patchify`: (B, gh*gw, p*p*C) -> (B, C, gh*p, gw*p)."""
    B = x.shape[0]
    (gh, gw), p = grid_size, patch_size
    x = x.reshape(B, gh, gw, p, p, channels)
    return torch.einsum("bhwpqc->bchpwq", x).reshape(B, channels, gh * p, gw * p)


@dataclass
class Masking:
    """Per-sample masking decided by noise: keep the `len_keep` patches with the smallest noise."""

    ids_keep: torch.Tensor  # (B, K) kept patch indices, in noise order
    ids_restore: torch.Tensor  # (B, L) position of each patch in the shuffled order
    mask: torch.Tensor  # (B, L) 1 on removed patches, 0 on kept ones

    @classmethod
    def from_noise(cls, noise: torch.Tensor, ratio: float) -> "Masking":
        B, L = noise.shape
        len_keep = int(L * (1 - ratio))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        mask = torch.ones(B, L, device=noise.device)
        mask[:, :len_keep] = 0
        return cls(ids_shuffle[:, :len_keep], ids_restore, torch.gather(mask, 1, ids_restore))


def masked_patch_loss(target: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor,
                      norm_pix: bool = True) -> torch.Tensor:
    """Mean squared error per patch, averaged over removed patches.

    With `norm_pix`, each target patch is normalised by its mean and UNBIASED variance (+1e-6).
    """
    if norm_pix:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(-1)
    return (per_patch * mask).sum() / mask.sum()


class MAEDecoder(nn.Module):
    """Plain transformer decoder for one modality: visible tokens + mask tokens -> patch values."""

    def __init__(self, grid_size: tuple[int, int], in_dim: int, out_dim: int, embed_dim: int = 512,
                 depth: int = 8, num_heads: int = 16, mlp_ratio: float = 4.0):
        super().__init__()
        self.grid_size = tuple(grid_size)
        self.embed = nn.Linear(in_dim, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.register_buffer("pos_embed", sincos_pos_embed_2d(embed_dim, self.grid_size)[None])
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, norm_eps=1e-5) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        self.pred = nn.Linear(embed_dim, out_dim)
        init_linear_and_norm(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, tokens: torch.Tensor, fusion: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """tokens (B, K, D) visible, fusion (B, M, D), ids_restore (B, L) -> predictions (B, L, out_dim)."""
        B, K = tokens.shape[:2]
        L = ids_restore.shape[1]
        x, fusion = self.embed(tokens), self.embed(fusion)
        x = torch.cat([x, self.mask_token.expand(B, L - K, -1)], dim=1)
        x = torch.gather(x, 1, ids_restore[..., None].expand(-1, -1, x.shape[-1]))  # un-shuffle
        x = torch.cat([fusion, x + self.pos_embed], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x[:, fusion.shape[1]:]))


@dataclass
class PretrainOutput:
    loss: torch.Tensor
    loss_image: torch.Tensor
    loss_audio: torch.Tensor
    pred_image: torch.Tensor  # (B, L_image, p*p*3)
    pred_audio: torch.Tensor  # (B, L_audio, p*p)
    mask_image: torch.Tensor  # (B, L_image), 1 = removed
    mask_audio: torch.Tensor  # (B, L_audio)


class AVMAE(AVModel):
    """Masked audio-visual pretraining model (docs/model.md, AV-MAE)."""

    task = "pretrain"

    def __init__(self, encoder: EarlyFusionEncoder, decoder_embed_dim: int = 512, decoder_depth: int = 8,
                 decoder_num_heads: int = 16, decoder_mlp_ratio: float = 4.0, image_mask_ratio: float = 0.75,
                 audio_mask_ratio: float = 0.8, norm_pix_loss: bool = True):
        super().__init__()
        self.encoder = encoder
        self.options = dict(decoder_embed_dim=decoder_embed_dim, decoder_depth=decoder_depth,
                            decoder_num_heads=decoder_num_heads, decoder_mlp_ratio=decoder_mlp_ratio,
                            image_mask_ratio=image_mask_ratio, audio_mask_ratio=audio_mask_ratio,
                            norm_pix_loss=norm_pix_loss)
        self.image_mask_ratio, self.audio_mask_ratio = image_mask_ratio, audio_mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.patch_size = encoder.config.patch_size
        D, p = encoder.embed_dim, self.patch_size
        dec = dict(embed_dim=decoder_embed_dim, depth=decoder_depth, num_heads=decoder_num_heads,
                   mlp_ratio=decoder_mlp_ratio)
        self.image_decoder = MAEDecoder(encoder.image.grid_size, D, p * p * 3, **dec)
        self.audio_decoder = MAEDecoder(encoder.audio.grid_size, D, p * p * 1, **dec)

    def forward(self, image: torch.Tensor, audio: torch.Tensor, image_noise: torch.Tensor | None = None,
                audio_noise: torch.Tensor | None = None, generator: torch.Generator | None = None
                ) -> PretrainOutput:
        """image (B, 3, H, W), audio (B, 1, F, T). Masking comes from `*_noise` (B, L) uniform noise,
        or, when absent, from noise drawn with `generator` (never from the global RNG)."""
        B = image.shape[0]
        image_noise = self._noise(image_noise, B, self.encoder.image.num_patches, generator, image.device)
        audio_noise = self._noise(audio_noise, B, self.encoder.audio.num_patches, generator, image.device)
        image_masking = Masking.from_noise(image_noise, self.image_mask_ratio)
        audio_masking = Masking.from_noise(audio_noise, self.audio_mask_ratio)
        tokens = self.encoder(image, audio, image_masking.ids_keep, audio_masking.ids_keep)
        pred_image = self.image_decoder(tokens.image, tokens.fusion, image_masking.ids_restore)
        pred_audio = self.audio_decoder(tokens.audio, tokens.fusion, audio_masking.ids_restore)
        loss_image = masked_patch_loss(patchify(image, self.patch_size), pred_image, image_masking.mask,
                                       self.norm_pix_loss)
        loss_audio = masked_patch_loss(patchify(audio, self.patch_size), pred_audio, audio_masking.mask,
                                       self.norm_pix_loss)
        return PretrainOutput(loss_image + loss_audio, loss_image, loss_audio, pred_image, pred_audio,
                              image_masking.mask, audio_masking.mask)

    @staticmethod
    def _noise(noise, batch, length, generator, device) -> torch.Tensor:
        if noise is not None:
            if tuple(noise.shape) != (batch, length):
                raise ValueError(f"masking noise must have shape {(batch, length)}, got {tuple(noise.shape)}")
            return noise
        if generator is None:
            raise ValueError("AVMAE needs masking noise: pass image_noise/audio_noise (B, L) or a "
                             "torch.Generator (the global RNG is never used, for reproducibility)")
        return torch.rand(batch, length, generator=generator, device=generator.device).to(device)
