"""One modality stream trained alone: the counterpart of MAE on ImageNet and AudioMAE on AudioSet.

DeepAVFusion starts both streams of its encoder from unimodal pretraining. :class:`StreamClassifier`
(supervised on the unimodal class) and :class:`StreamMAE` (masked reconstruction of the stream's own
patches) train one :class:`ModalityStream`; the stream's weights are then what ``load_stream_init``
reads (``{"model": stream.state_dict()}``, the official MAE key layout), and the head or decoder is
discarded.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avfusion.models.layers import init_linear_and_norm
from avfusion.models.pretrain import MAEDecoder, Masking, masked_patch_loss, patchify
from avfusion.models.stream import ModalityStream

OBJECTIVES = ("supervised", "mae")
POOLS = ("max", "mean", "patch")


@dataclass
class StreamOutput:
    loss: torch.Tensor
    logits: torch.Tensor | None = None  # (B, C), supervised
    token_logits: torch.Tensor | None = None  # (B, N, C + 1), supervised per patch (last class: background)
    pred: torch.Tensor | None = None  # (B, L, p*p*C), mae
    mask: torch.Tensor | None = None  # (B, L), mae: 1 = removed


class StreamClassifier(nn.Module):
    """A stream, a LayerNorm and a linear head on its tokens; cross-entropy.

    ``pool`` says what the head classifies:

    * ``max`` / ``mean``: the stream's tokens max- (or mean-) pooled per channel, one class per input.
      Max pooling is far faster to learn where the object covers few tokens (AV-Digits glyph canvases,
      tiny stream, batch 64, lr 1e-3: test top-1 0.84 after 50 steps; mean pooling still at chance
      after 100), but only the tokens that decide the maximum need to know the class.
    * ``patch``: every token, into ``num_classes + 1`` classes (the last: background); ``labels`` are
      then per token (B, N). Every token must name what lies under it, as the dense tasks later read
      it. The input-level ``logits`` (B, num_classes) are each class's best token.
    """

    def __init__(self, stream: ModalityStream, num_classes: int, label_smoothing: float = 0.0, pool: str = "max"):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.stream = stream
        self.pool = pool
        self.num_classes = num_classes
        self.head_norm = nn.LayerNorm(stream.embed_dim)
        self.head = nn.Linear(stream.embed_dim, num_classes + (pool == "patch"))
        self.label_smoothing = label_smoothing
        init_linear_and_norm(self.head_norm)
        init_linear_and_norm(self.head)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, noise: torch.Tensor | None = None
                ) -> StreamOutput:
        """``labels``: (B,) classes, or for ``pool="patch"`` (B, N) per-token classes (``num_classes`` =
        background). ``logits`` (B, num_classes); ``token_logits`` (B, N, num_classes + 1) for ``patch``."""
        tokens = self.stream(x)
        if self.pool == "patch":
            token_logits = self.head(self.head_norm(tokens))  # (B, N, C + 1)
            logits = token_logits[..., :self.num_classes].amax(dim=1)
            loss = (F.cross_entropy(token_logits.flatten(0, 1), labels.flatten(), label_smoothing=self.label_smoothing)
                    if labels is not None else logits.new_zeros(()))
            return StreamOutput(loss, logits=logits, token_logits=token_logits)
        pooled = tokens.amax(dim=1) if self.pool == "max" else tokens.mean(dim=1)
        logits = self.head(self.head_norm(pooled))
        loss = (F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing) if labels is not None
                else logits.new_zeros(()))
        return StreamOutput(loss, logits=logits)


class StreamMAE(nn.Module):
    """A stream as a masked autoencoder: the visible patches through the stream, a plain decoder
    predicts the removed ones (MSE over removed patches, optionally per-patch normalised targets)."""

    def __init__(self, stream: ModalityStream, mask_ratio: float = 0.75, decoder_embed_dim: int = 128,
                 decoder_depth: int = 2, decoder_num_heads: int = 4, norm_pix_loss: bool = False):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.stream = stream
        self.mask_ratio, self.norm_pix_loss = mask_ratio, norm_pix_loss
        p = stream.patch_embed.patch_size
        channels = stream.patch_embed.proj.in_channels
        self.patch_size = p
        self.decoder = MAEDecoder(stream.grid_size, stream.embed_dim, p * p * channels, decoder_embed_dim,
                                  decoder_depth, decoder_num_heads)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, noise: torch.Tensor | None = None
                ) -> StreamOutput:
        """``noise`` (B, L) uniform decides the masking (required: the global RNG is never used)."""
        if noise is None or tuple(noise.shape) != (x.shape[0], self.stream.num_patches):
            raise ValueError(f"StreamMAE needs masking noise of shape {(x.shape[0], self.stream.num_patches)}")
        masking = Masking.from_noise(noise, self.mask_ratio)
        tokens = self.stream(x, masking.ids_keep)
        empty = tokens.new_zeros(tokens.shape[0], 0, tokens.shape[-1])  # no fusion tokens
        pred = self.decoder(tokens, empty, masking.ids_restore)
        loss = masked_patch_loss(patchify(x, self.patch_size), pred, masking.mask, self.norm_pix_loss)
        return StreamOutput(loss, pred=pred, mask=masking.mask)
