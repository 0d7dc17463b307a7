"""One modality stream: a plain ViT without class token (patch embedding, fixed positions, blocks, norm)."""
from __future__ import annotations

import torch
from torch import nn

from avfusion.models.layers import Block, PatchEmbed, drop_path_rates, sincos_pos_embed_2d


class ModalityStream(nn.Module):
    """ViT stream for one modality (images: 3 channels; log-mel spectrograms: 1 channel).

    Parameter names follow the official checkpoints: patch_embed.proj, pos_embed, blocks.{i}, norm.
    """

    def __init__(self, input_size: tuple[int, int], in_chans: int, patch_size: int = 16,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(tuple(input_size), patch_size, in_chans, embed_dim)
        self.grid_size = self.patch_embed.grid_size
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        # Fixed, not trained; persistent so that checkpoints carry it exactly as stored.
        self.register_buffer("pos_embed", sincos_pos_embed_2d(embed_dim, self.grid_size)[None])
        rates = drop_path_rates(drop_path, depth)
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, drop=drop, attn_drop=attn_drop, drop_path=rate,
                  norm_eps=1e-6)
            for rate in rates])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def embed(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) -> tokens (B, N, D) with positions; only `ids_keep` (B, K) when given."""
        tokens = self.patch_embed(x) + self.pos_embed
        if ids_keep is None:
            return tokens
        return torch.gather(tokens, 1, ids_keep[..., None].expand(-1, -1, tokens.shape[-1]))

    def forward(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """The stream alone (no fusion): (B, C, H, W) -> normalised tokens (B, N, D)."""
        tokens = self.embed(x, ids_keep)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)
