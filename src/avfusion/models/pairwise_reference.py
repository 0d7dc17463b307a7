"""The pairwise interactions computed the way the paper writes them: every pair materialised.

For verification and benchmarking ONLY (tests prove the library's linear-cost evaluation equal to
these; `benchmarks/fusion_cost.py` compares their cost). No model uses this module: its memory grows
with N_image x N_audio.
"""
from __future__ import annotations

import torch

from avfusion.models.fusion import DenseInteraction, FactorizedInteraction


def materialised_dense(block: DenseInteraction, m, image, audio):
    """The dense interaction the way the paper writes it: all (audio_j, image_i) pairs built."""
    B, nv, D = image.shape
    na = audio.shape[1]
    pairs = torch.cat([audio[:, :, None].expand(B, na, nv, D), image[:, None].expand(B, na, nv, D)], -1).reshape(B, na * nv, 2 * D)
    H, inner = block.num_heads, block.inner
    q = block.q(m).reshape(B, -1, H, inner // H).transpose(1, 2)
    k, v = (t.reshape(B, na * nv, H, inner // H).transpose(1, 2) for t in block.kv(pairs).chunk(2, -1))
    attn = (q @ k.transpose(-2, -1) * block.scale).softmax(-1)
    return block.proj((attn @ v).transpose(1, 2).reshape(B, -1, inner))


def materialised_factorized(block: FactorizedInteraction, m, image, audio):
    f, mv, ma = m.split(block.num_tokens, 1)
    mv, ma = block.attn_v(mv, image), block.attn_a(ma, audio)
    B, kv, D = mv.shape
    ka = ma.shape[1]
    pairs = torch.cat([mv[:, :, None].expand(B, kv, ka, D), ma[:, None].expand(B, kv, ka, D)], -1).reshape(B, kv * ka, 2 * D)
    H = block.num_heads
    q = block.q(f).reshape(B, f.shape[1], H, -1).transpose(1, 2)
    k = block.k(pairs).reshape(B, kv * ka, H, -1).transpose(1, 2)
    v = block.v(pairs).reshape(B, kv * ka, H, -1).transpose(1, 2)
    attn = (q @ k.transpose(-2, -1) * block.scale).softmax(-1)
    out = block.proj((attn @ v).transpose(1, 2).reshape(B, f.shape[1], D))
    return torch.cat([out, mv, ma], 1)
