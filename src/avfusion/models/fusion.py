"""Fusion blocks: how the fusion tokens read the local image and audio tokens at one layer.

Every block shares one shell (docs/model.md, fusion blocks; the residual is added to the NORMALISED fusion state):

    m, v, a = norm1_mm(M), norm1_img(V), norm1_aud(A)
    m = m + Interact(m, v, a)
    M_out = m + MLP(norm2(m))

The `dense` and `factorized` interactions attend over every (image token, audio token) pair. Keys and
values are linear in the concatenated pair, so the softmax over all pairs factorises into two ordinary
cross-attentions sharing the query (docs/model.md, exact dense interactions): we compute them exactly at O(N_image + N_audio) cost
and never build the N_image x N_audio pairs.
"""
from __future__ import annotations

import torch
from torch import nn

from avfusion.models.layers import DropPath, Mlp, attend

FUSION_TYPES = ("factorized", "dense", "token", "none")


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, N, H*d) -> (B, H, N, d)."""
    B, N, C = x.shape
    return x.reshape(B, N, num_heads, C // num_heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, H, N, d) -> (B, N, H*d)."""
    B, H, N, d = x.shape
    return x.transpose(1, 2).reshape(B, N, H * d)


def pairwise_attention(q: torch.Tensor, first: torch.Tensor, second: torch.Tensor, key: nn.Linear,
                       value: nn.Linear, num_heads: int, scale: float, dropout_p: float = 0.0
                       ) -> torch.Tensor:
    """Attention of `q` over all pairs [first_i ; second_j], exactly, without building the pairs.

    q: (B, Nq, dk) projected queries; first (B, N1, D), second (B, N2, D); key: Linear(2D -> dk);
    value: Linear(2D -> dv). Returns (B, Nq, dv), equal to softmax over the N1*N2 pairs of
    scale * q.key(pair) applied to value(pair).
    """
    D = first.shape[-1]
    qh = _heads(q, num_heads)
    # Split each pair projection into the part acting on `first` and the part acting on `second`.
    k1 = _heads(nn.functional.linear(first, key.weight[:, :D]), num_heads)
    k2 = _heads(nn.functional.linear(second, key.weight[:, D:]), num_heads)
    v1 = _heads(nn.functional.linear(first, value.weight[:, :D]), num_heads)
    v2 = _heads(nn.functional.linear(second, value.weight[:, D:]), num_heads)
    # The key bias adds q.b to every logit and cancels in the softmax; the value bias adds once.
    out = attend(qh, k1, v1, scale=scale, dropout_p=dropout_p) + attend(qh, k2, v2, scale=scale,
                                                                       dropout_p=dropout_p)
    out = _merge(out)
    return out if value.bias is None else out + value.bias


def attention_weights(q: torch.Tensor, k: torch.Tensor, num_heads: int, scale: float) -> torch.Tensor:
    """Softmax attention weights of projected queries over projected keys, averaged over heads:
    (B, Nq, H*dk), (B, Nk, H*dk) -> (B, Nq, Nk). For read-outs (localisation), not for training."""
    logits = _heads(q, num_heads) @ _heads(k, num_heads).transpose(-2, -1) * scale
    return logits.softmax(-1).mean(1)


class CrossAttention(nn.Module):
    """Queries from x, keys/values from context (parameter names q, kv, proj)."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def weights(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """(B, Nq, Nk) attention of x over context, averaged over heads."""
        D = x.shape[-1]
        key = nn.functional.linear(context, self.kv.weight[:D], self.kv.bias[:D])
        return attention_weights(self.q(x), key, self.num_heads, (D // self.num_heads) ** -0.5)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = _heads(self.q(x), self.num_heads)
        k, v = (_heads(t, self.num_heads) for t in self.kv(context).chunk(2, dim=-1))
        out = attend(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(_merge(out)))


class FactorizedInteraction(nn.Module):
    """`factorized_mmi`: aggregation tokens summarise each modality; fusion tokens attend over their pairs.

    The fusion state is split into (fusion, image-aggregation, audio-aggregation) tokens. The
    aggregation tokens cross-attend to their modality; the fusion tokens attend over all
    [image-aggregation_i ; audio-aggregation_j] pairs. Query/key width r*D, value width D; the
    softmax scale is (D/H)^-0.5 (official quirk).
    """

    def __init__(self, dim: int, num_heads: int, num_tokens: tuple[int, int, int], attn_ratio: float,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.num_tokens = tuple(num_tokens)
        self.scale = (dim // num_heads) ** -0.5
        inner = int(dim * attn_ratio)
        self.attn_v = CrossAttention(dim, num_heads, attn_drop, proj_drop)
        self.attn_a = CrossAttention(dim, num_heads, attn_drop, proj_drop)
        self.q = nn.Linear(dim, inner)
        self.k = nn.Linear(2 * dim, inner)
        # The key bias cancels in the softmax (kept for the official keys): its gradient is exactly zero,
        # and it is frozen so that DDP, which needs every trainable parameter used, can train the block.
        self.k.bias.requires_grad_(False)
        self.v = nn.Linear(2 * dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, m: torch.Tensor, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        fusion, agg_image, agg_audio = m.split(self.num_tokens, dim=1)
        agg_image = self.attn_v(agg_image, image)
        agg_audio = self.attn_a(agg_audio, audio)
        # pairs are [image-aggregation_i ; audio-aggregation_j]
        out = pairwise_attention(self.q(fusion), agg_image, agg_audio, self.k, self.v, self.num_heads,
                                 self.scale, self.attn_drop if self.training else 0.0)
        fusion = self.proj_drop(self.proj(out))
        return torch.cat([fusion, agg_image, agg_audio], dim=1)

    def image_attention(self, m: torch.Tensor, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """(B, F, N_image): each fusion token's attention over the pairs, marginalised to the image-
        aggregation tokens, composed with their attention over the image tokens."""
        fusion, agg_image, _ = m.split(self.num_tokens, dim=1)
        over_image = self.attn_v.weights(agg_image, image)  # (B, Kv, N_image)
        agg_image = self.attn_v(agg_image, image)
        D = m.shape[-1]
        key = nn.functional.linear(agg_image, self.k.weight[:, :D])  # the image half of each pair key
        over_agg = attention_weights(self.q(fusion), key, self.num_heads, self.scale)  # (B, F, Kv)
        return over_agg @ over_image


class DenseInteraction(nn.Module):
    """`dense_mmi`: every fusion token attends over all [audio_j ; image_i] token pairs.

    Quirk kept from the official code: the audio half comes first in the pair. Keys and values are
    one Linear(2D -> 2rD) (`kv`, first rD outputs keys); output projection Linear(rD -> D); softmax
    scale (D/H)^-0.5.
    """

    def __init__(self, dim: int, num_heads: int, attn_ratio: float, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.inner = int(dim * attn_ratio)
        self.q = nn.Linear(dim, self.inner)
        self.kv = nn.Linear(2 * dim, 2 * self.inner)
        self.proj = nn.Linear(self.inner, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, m: torch.Tensor, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        key = _Projection(self.kv.weight[: self.inner], self.kv.bias[: self.inner])
        value = _Projection(self.kv.weight[self.inner:], self.kv.bias[self.inner:])
        out = pairwise_attention(self.q(m), audio, image, key, value, self.num_heads, self.scale,
                                 self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(out))

    def image_attention(self, m: torch.Tensor, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """(B, M, N_image): the marginal over image tokens of the attention over all pairs, which is
        exactly the image factor of the factorised softmax."""
        D = m.shape[-1]
        key = nn.functional.linear(image, self.kv.weight[: self.inner, D:])  # image half of the pair key
        return attention_weights(self.q(m), key, self.num_heads, self.scale)


class _Projection:
    """A (weight, bias) pair that quacks like nn.Linear for `pairwise_attention` (autograd-friendly)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight, self.bias = weight, bias


class TokenInteraction(nn.Module):
    """`token`: the fusion tokens cross-attend to the concatenation of all image and audio tokens.

    Query/key/value width r*D, scale (rD/H)^-0.5. Its norm swap quirk lives in `FusionBlock`.
    """

    def __init__(self, dim: int, num_heads: int, attn_ratio: float, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        inner = int(dim * attn_ratio)
        self.q = nn.Linear(dim, inner)
        self.kv = nn.Linear(dim, 2 * inner)
        self.proj = nn.Linear(inner, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, m: torch.Tensor, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        q = _heads(self.q(m), self.num_heads)
        k, v = (_heads(t, self.num_heads) for t in self.kv(torch.cat([image, audio], 1)).chunk(2, -1))
        out = attend(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(_merge(out)))

    def image_attention(self, m: torch.Tensor, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """(B, M, N_image): attention over the image tokens (renormalised over them)."""
        inner = self.q.out_features
        keys = nn.functional.linear(torch.cat([image, audio], 1), self.kv.weight[:inner], self.kv.bias[:inner])
        weights = attention_weights(self.q(m), keys, self.num_heads, (inner // self.num_heads) ** -0.5)
        weights = weights[..., : image.shape[1]]
        return weights / weights.sum(-1, keepdim=True)


class FusionBlock(nn.Module):
    """One fusion block (docs/model.md, fusion blocks): the shared shell around an interaction."""

    def __init__(self, fusion_type: str, dim: int, num_heads: int, num_tokens: tuple[int, int, int],
                 attn_ratio: float = 0.25, mlp_ratio: float = 1.0, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.fusion_type = fusion_type
        self.norm1_mm = nn.LayerNorm(dim)
        self.norm1_aud = nn.LayerNorm(dim)
        self.norm1_img = nn.LayerNorm(dim)
        if fusion_type == "factorized":
            self.attn = FactorizedInteraction(dim, num_heads, num_tokens, attn_ratio, attn_drop, drop)
        elif fusion_type == "dense":
            self.attn = DenseInteraction(dim, num_heads, attn_ratio, attn_drop, drop)
        elif fusion_type == "token":
            self.attn = TokenInteraction(dim, num_heads, attn_ratio, attn_drop, drop)
        else:
            raise ValueError(f"unknown fusion type {fusion_type!r}; choose one of {FUSION_TYPES[:3]}")
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def _normalise(self, fusion, image, audio):
        if self.fusion_type == "token":  # official quirk: the modality norms are swapped
            return self.norm1_mm(fusion), self.norm1_aud(image), self.norm1_img(audio)
        return self.norm1_mm(fusion), self.norm1_img(image), self.norm1_aud(audio)

    def image_attention(self, fusion: torch.Tensor, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """How much each fusion token attends to each image token at this block: (B, Mq, N_image),
        rows summing to 1, averaged over heads. The training-free localisation read-out."""
        return self.attn.image_attention(*self._normalise(fusion, image, audio))

    def forward(self, fusion: torch.Tensor, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """(B, M, D), (B, Ni, D), (B, Na, D) -> new fusion state (B, M, D)."""
        m, image, audio = self._normalise(fusion, image, audio)
        m = m + self.drop_path(self.attn(m, image, audio))
        return m + self.drop_path(self.mlp(self.norm2(m)))
