"""A deliberately naive second implementation of the model of docs/model.md, for parity on configurations the official
fixtures do not cover. It works on an official-layout state dict, builds every audio-visual pair
explicitly and uses textbook attention, so it shares no code path with the library's models.
"""
from __future__ import annotations

import math

import torch


def layer_norm(x, sd, prefix, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * sd[prefix + ".weight"] + sd[prefix + ".bias"]


def linear(x, sd, prefix):
    return x @ sd[prefix + ".weight"].T + sd[prefix + ".bias"]


def mha(q, k, v, heads, scale):
    """q (B, Nq, H*dk), k (B, Nk, H*dk), v (B, Nk, H*dv) -> (B, Nq, H*dv) with explicit loops over heads."""
    outs = []
    dk, dv = q.shape[-1] // heads, v.shape[-1] // heads
    for h in range(heads):
        qh, kh, vh = q[..., h * dk:(h + 1) * dk], k[..., h * dk:(h + 1) * dk], v[..., h * dv:(h + 1) * dv]
        weights = torch.softmax(qh @ kh.transpose(1, 2) * scale, dim=-1)
        outs.append(weights @ vh)
    return torch.cat(outs, -1)


def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def mlp(x, sd, prefix):
    return linear(gelu(linear(x, sd, prefix + ".fc1")), sd, prefix + ".fc2")


def vit_block(x, sd, prefix, heads, eps):
    D = x.shape[-1]
    h = layer_norm(x, sd, prefix + ".norm1", eps)
    q, k, v = linear(h, sd, prefix + ".attn.qkv").split(D, -1)
    x = x + linear(mha(q, k, v, heads, (D // heads) ** -0.5), sd, prefix + ".attn.proj")
    return x + mlp(layer_norm(x, sd, prefix + ".norm2", eps), sd, prefix + ".mlp")


def pairs(first, second):
    """All [first_i ; second_j] pairs, (B, N1*N2, 2D)."""
    B, n1, D = first.shape
    n2 = second.shape[1]
    return torch.cat([first[:, :, None].expand(B, n1, n2, D), second[:, None].expand(B, n1, n2, D)], -1).reshape(B, n1 * n2, 2 * D)


def fusion_block(m, v, a, sd, p, kind, heads, split):
    D = m.shape[-1]
    m = layer_norm(m, sd, p + ".norm1_mm", 1e-5)
    if kind == "token":
        v, a = layer_norm(v, sd, p + ".norm1_aud", 1e-5), layer_norm(a, sd, p + ".norm1_img", 1e-5)
    else:
        v, a = layer_norm(v, sd, p + ".norm1_img", 1e-5), layer_norm(a, sd, p + ".norm1_aud", 1e-5)
    if kind == "factorized":
        f, mv, ma = m.split(split, 1)

        def cross(x, ctx, q):
            k, val = linear(ctx, sd, q + ".kv").split(D, -1)
            return linear(mha(linear(x, sd, q + ".q"), k, val, heads, (D // heads) ** -0.5), sd, q + ".proj")

        mv, ma = cross(mv, v, p + ".attn.attn_v"), cross(ma, a, p + ".attn.attn_a")
        pr = pairs(mv, ma)
        out = mha(linear(f, sd, p + ".attn.q"), linear(pr, sd, p + ".attn.k"), linear(pr, sd, p + ".attn.v"),
                  heads, (D // heads) ** -0.5)
        inter = torch.cat([linear(out, sd, p + ".attn.proj"), mv, ma], 1)
    elif kind == "dense":
        pr = pairs(a, v)  # audio half first (official quirk)
        k, val = linear(pr, sd, p + ".attn.kv").chunk(2, -1)
        inter = linear(mha(linear(m, sd, p + ".attn.q"), k, val, heads, (D // heads) ** -0.5), sd, p + ".attn.proj")
    else:
        k, val = linear(torch.cat([v, a], 1), sd, p + ".attn.kv").chunk(2, -1)
        q = linear(m, sd, p + ".attn.q")
        inter = linear(mha(q, k, val, heads, (q.shape[-1] // heads) ** -0.5), sd, p + ".attn.proj")
    m = m + inter
    return m + mlp(layer_norm(m, sd, p + ".norm2", 1e-5), sd, p + ".mlp")


def patch_tokens(x, sd, prefix, patch):
    w = sd[prefix + ".patch_embed.proj.weight"]
    B, C, H, W = x.shape
    cells = x.reshape(B, C, H // patch, patch, W // patch, patch).permute(0, 2, 4, 1, 3, 5).reshape(B, -1, C * patch * patch)
    return cells @ w.reshape(w.shape[0], -1).T + sd[prefix + ".patch_embed.proj.bias"] + sd[prefix + ".pos_embed"]


def encoder(sd, image, audio, depth, heads, fusion_heads, kind, layers, split, patch=16, keep=(None, None)):
    v, a = patch_tokens(image, sd, "encoder.image", patch), patch_tokens(audio, sd, "encoder.audio", patch)
    if keep[0] is not None:
        v = torch.stack([v[b, keep[0][b]] for b in range(v.shape[0])])
        a = torch.stack([a[b, keep[1][b]] for b in range(a.shape[0])])
    m = sd["encoder.fusion_tokens"].expand(image.shape[0], -1, -1)
    per_layer = []
    for i in range(depth):
        if i in layers:
            n = m.shape[1]
            nv = vit_block(torch.cat([m, v], 1), sd, f"encoder.image.blocks.{i}", heads, 1e-6)[:, n:]
            na = vit_block(torch.cat([m, a], 1), sd, f"encoder.audio.blocks.{i}", heads, 1e-6)[:, n:]
            m = fusion_block(m, v, a, sd, f"encoder.fusion_blocks.{i}", kind, fusion_heads, split)
            v, a = nv, na
        else:
            v = vit_block(v, sd, f"encoder.image.blocks.{i}", heads, 1e-6)
            a = vit_block(a, sd, f"encoder.audio.blocks.{i}", heads, 1e-6)
        per_layer.append((v, a, m))
    final = (layer_norm(v, sd, "encoder.image.norm", 1e-6), layer_norm(a, sd, "encoder.audio.norm", 1e-6),
             layer_norm(m, sd, "encoder.fusion_norm", 1e-5))
    return final, per_layer
