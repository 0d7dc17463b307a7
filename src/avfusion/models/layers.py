"""Small building blocks shared by the streams, fusion blocks and decoders."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# How plain self-attention is computed. "sdpa" uses torch's fused kernels; "math" is the textbook
# matmul-softmax-matmul, kept for benchmarks and as a numerical cross-check.
ATTENTION_IMPLS = ("sdpa", "math")


def sincos_pos_embed_2d(embed_dim: int, grid_size: tuple[int, int]) -> torch.Tensor:
    """Fixed 2-D sin-cos positions, (gh*gw, embed_dim), row-major token order.

    Token (r, c) gets [e(c), e(r)] with e(p) = [sin(p*omega), cos(p*omega)],
    omega_k = 1 / 10000^(k / (D/4)): the first half encodes the column, the second the row.
    Computed in float64, like the MAE reference, then cast to float32.
    """
    if embed_dim % 4:
        raise ValueError(f"sin-cos positions need embed_dim divisible by 4, got {embed_dim}")
    gh, gw = grid_size
    omega = 1.0 / 10000 ** (torch.arange(embed_dim // 4, dtype=torch.float64) / (embed_dim / 4))

    def encode(pos: torch.Tensor) -> torch.Tensor:  # (N,) -> (N, D/2)
        angles = pos[:, None] * omega[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    rows, cols = torch.meshgrid(torch.arange(gh, dtype=torch.float64),
                                torch.arange(gw, dtype=torch.float64), indexing="ij")
    emb = torch.cat([encode(cols.reshape(-1)), encode(rows.reshape(-1))], dim=1)
    return emb.float()


def drop_path_rates(max_rate: float, depth: int) -> list[float]:
    """Stochastic-depth rate per block, rising linearly from 0 to `max_rate`."""
    return [max_rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample while training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)


class Mlp(nn.Module):
    """Linear -> exact GELU -> dropout -> Linear -> dropout (parameter names fc1, fc2)."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
           dropout_p: float = 0.0, impl: str = "sdpa") -> torch.Tensor:
    """Multi-head attention on (B, H, Nq, dk), (B, H, Nk, dk), (B, H, Nk, dv) -> (B, H, Nq, dv)."""
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)
    if impl != "math":
        raise ValueError(f"unknown attention impl {impl!r}; choose one of {ATTENTION_IMPLS}")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    attn = (q @ k.transpose(-2, -1) * scale).softmax(dim=-1)
    attn = F.dropout(attn, dropout_p, training=dropout_p > 0)
    return attn @ v


class Attention(nn.Module):
    """Self-attention with a fused qkv projection (parameter names qkv, proj)."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)
        self.impl = "sdpa"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        # (B, N, 3D) -> (3, B, H, N, D/H)
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        out = attend(qkv[0], qkv[1], qkv[2], dropout_p=self.attn_drop if self.training else 0.0,
                     impl=self.impl)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, N, D)))


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)); x + MLP(LN(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, attn_drop=attn_drop, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens, (B, C, H, W) -> (B, gh*gw, D) in row-major order."""

    def __init__(self, input_size: tuple[int, int], patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        h, w = input_size
        if h % patch_size or w % patch_size:
            raise ValueError(f"input size {input_size} is not a multiple of the patch size {patch_size}")
        self.input_size = (h, w)
        self.patch_size = patch_size
        self.grid_size = (h // patch_size, w // patch_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(f"expected input of spatial size {self.input_size}, got {tuple(x.shape[-2:])}")
        return self.proj(x).flatten(2).transpose(1, 2)


def init_linear_and_norm(module: nn.Module) -> None:
    """Xavier-uniform Linear weights with zero bias, unit LayerNorm (the MAE/official init)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def set_attention_impl(module: nn.Module, impl: str) -> None:
    """Switch every self-attention in `module` between "sdpa" and "math"."""
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"unknown attention impl {impl!r}; choose one of {ATTENTION_IMPLS}")
    for m in module.modules():
        if isinstance(m, Attention):
            m.impl = impl
