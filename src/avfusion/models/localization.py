"""Visual sound localisation on top of the early-fusion encoder: two heatmap read-outs.

* ``attention_map``: training-free, from the fusion blocks' attention over the image tokens.
* ``ContrastiveLocalizer``: a light head trained without labels on audio-visual pairs
  (multiple-instance contrastive learning: an audio, or fusion, embedding against the patch
  embeddings of an image, max over patches, InfoNCE over the batch).

Both give a heatmap on the image token grid (B, rows, cols); evaluation resizes it.
See docs/localization.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avfusion.errors import ConfigError
from avfusion.models.base import AVModel

QUERIES = ("audio", "fusion")
PAIRINGS = ("joint", "cross")


def select_blocks(num_blocks: int, blocks: str | Sequence[int]) -> list[int]:
    """Positions (among the fusion blocks, in layer order) a read-out averages: "last", "all",
    or explicit positions (negative counts from the end)."""
    if num_blocks == 0:
        raise ConfigError("the encoder has no fusion block, so it has no fusion attention to read out; "
                          "use the contrastive read-out")
    if blocks == "last":
        return [num_blocks - 1]
    if blocks == "all":
        return list(range(num_blocks))
    if isinstance(blocks, str):
        raise ConfigError(f"attention blocks {blocks!r}: use 'last', 'all' or a list of fusion-block positions")
    positions = [int(b) for b in blocks]
    if not positions or any(not -num_blocks <= b < num_blocks for b in positions):
        raise ConfigError(f"attention blocks {list(blocks)}: give positions in -{num_blocks}..{num_blocks - 1}")
    return sorted({b % num_blocks for b in positions})


def attention_map(image_attention: Sequence[torch.Tensor], grid: tuple[int, int],
                  blocks: str | Sequence[int] = "last") -> torch.Tensor:
    """Per fusion block (B, Mq, N_image) attention -> heatmap (B, rows, cols).

    The mean over the fusion tokens (queries) and over the selected blocks of the attention mass
    each image token receives; each map sums to 1 over the grid.
    """
    chosen = select_blocks(len(image_attention), blocks)
    mass = torch.stack([image_attention[i].float().mean(1) for i in chosen]).mean(0)  # (B, N_image)
    return mass.reshape(mass.shape[0], *grid)


@dataclass
class LocalizationOutput:
    heatmap: torch.Tensor  # (B, rows, cols) cosine similarity of the query with each image patch
    query: torch.Tensor    # (B, P) L2-normalised audio (or fusion) embedding
    patches: torch.Tensor  # (B, N_image, P) L2-normalised patch embeddings
    loss: torch.Tensor | None = None  # contrastive loss, when a pairing was asked for
    image_attention: list[torch.Tensor] | None = None  # the encoder's, when asked for


def best_patches(scores: torch.Tensor, top_k: int = 1) -> torch.Tensor:
    """(..., N) per-patch scores -> (...) the mean of the ``top_k`` best (1: the maximum, the official rule)."""
    if top_k == 1:
        return scores.amax(-1)
    return scores.topk(min(top_k, scores.shape[-1]), dim=-1).values.mean(-1)


def mil_scores(query: torch.Tensor, patches: torch.Tensor, top_k: int = 1) -> torch.Tensor:
    """(B, P) queries, (B', N, P) patches -> (B, B') scores: over the patches of image j, the max (or the
    mean of the ``top_k`` best) of <query_i, patch_jn>."""
    return best_patches(torch.einsum("ip,jnp->ijn", query, patches), top_k)


def info_nce(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of a (B, B) score matrix whose diagonal holds the true pairs."""
    logits = scores / temperature
    target = torch.arange(scores.shape[0], device=scores.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def band_info_nce(band: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE from shifted pairs: band[i, k] scores (image (i + k) mod B, audio i), k = 0..K.

    Audio i is contrasted with images i .. i+K (the true one at k = 0); image j with audios
    j, j-1, .., j-K, which are the entries band[(j - k) mod B, k] of the same matrix.
    """
    b, kk = band.shape
    if kk > b:
        raise ConfigError(f"{kk - 1} negatives need a batch of at least {kk} pairs, got {b}")
    logits = band / temperature
    target = torch.zeros(b, dtype=torch.long, device=band.device)
    shifts = torch.arange(kk, device=band.device)
    rows = (torch.arange(b, device=band.device)[:, None] - shifts[None, :]) % b  # (B, K+1)
    per_image = logits[rows, shifts[None, :].expand(b, -1)]  # (B, K+1): image j vs audio j - k
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(per_image, target))


def projection(dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """BatchNorm1d(affine=False) then Linear (``hidden_dim`` 0) or Linear-GELU-Linear.

    The normalisation removes the component all tokens share (pretrained pooled audio features
    are ~0.96 cosine-similar across clips), which otherwise leaves every score nearly equal.
    """
    layers: list[nn.Module] = [nn.BatchNorm1d(dim, affine=False)]
    if hidden_dim:
        layers += [nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim)]
    else:
        layers.append(nn.Linear(dim, out_dim))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class ContrastiveLocalizer(AVModel):
    """Encoder + two small projection heads trained by multiple-instance InfoNCE.

    The query is the mean of the final audio tokens (``query="audio"``) or fusion tokens
    (``"fusion"``), projected and L2-normalised; each final image token is projected (the same
    head for every token) and L2-normalised. The heatmap is their cosine similarity per patch.
    With ``freeze_encoder`` the encoder gets no gradients and stays in eval mode.

    ``mil_top_k``: an image's score for a query is the mean of its ``top_k`` best patch scores (1: the
    best patch, as EZ-VSL and DeepAVFusion do). An object covering several patches then trains all of
    them to answer, not only its most telling one (AV-Digits, a digit on 2 x 2 patches: see
    docs/avdigits.md).

    ``neutral_partner``: each side is encoded beside a neutral partner instead of its own: the patches
    from (image, all-zero log-mel), the query from (all-zero image, i.e. the mean colour after
    normalisation, audio). Nothing of a pair leaks into either side through fusion, so one pass over
    the 2B such inputs scores all B x B pairs (every other pair of the batch is a negative, at 2 encoder
    passes per pair where ``cross`` pairing pays K + 1 for K negatives). Heatmaps are then computed
    the same way; the attention read-out still comes from a pass over the true pair.
    """

    task = "localize"

    def __init__(self, encoder: nn.Module, proj_dim: int = 128, hidden_dim: int = 512, query: str = "audio",
                 temperature: float = 0.07, freeze_encoder: bool = True, neutral_partner: bool = False,
                 mil_top_k: int = 1):
        super().__init__()
        if query not in QUERIES:
            raise ConfigError(f"localisation query {query!r} is not one of {QUERIES}")
        if proj_dim < 1 or hidden_dim < 0 or temperature <= 0 or mil_top_k < 1:
            raise ConfigError(f"need proj_dim >= 1, hidden_dim >= 0, temperature > 0 and mil_top_k >= 1, got "
                              f"{proj_dim}, {hidden_dim}, {temperature}, {mil_top_k}")
        self.encoder = encoder
        self.query = query
        self.temperature = temperature
        self.neutral_partner = neutral_partner
        self.mil_top_k = mil_top_k
        self.options = dict(proj_dim=proj_dim, hidden_dim=hidden_dim, query=query, temperature=temperature,
                            freeze_encoder=freeze_encoder, neutral_partner=neutral_partner, mil_top_k=mil_top_k)
        d = encoder.embed_dim
        self.image_proj = projection(d, hidden_dim, proj_dim)
        self.query_proj = projection(d, hidden_dim, proj_dim)
        self._freeze(freeze_encoder)

    def _embed(self, image: torch.Tensor, audio: torch.Tensor, return_attention: bool = False):
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            out = self.encoder(image, audio, return_attention=return_attention)
        pooled = (out.audio if self.query == "audio" else out.fusion).mean(1)  # (B, D)
        return (*self.project(pooled, out.image), out.image_attention)

    def neutral_features(self, image: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's side of ``neutral_partner``, in one pass: (pooled query tokens (B, D) of (zero image,
        audio), image tokens (B, N_image, D) of (image, zero audio)). Without gradients when frozen: what a
        feature cache may keep (see ``LocalizeModelConfig.cache_features``)."""
        b = image.shape[0]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            out = self.encoder(torch.cat([image, torch.zeros_like(image)]),
                               torch.cat([torch.zeros_like(audio), audio]))
        pooled = (out.audio if self.query == "audio" else out.fusion)[b:].mean(1)
        return pooled, out.image[:b]

    def project(self, pooled: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The heads: pooled (B, D), image tokens (B, N, D) -> L2-normalised query (B, P), patches (B, N, P)."""
        query = F.normalize(self.query_proj(pooled), dim=-1)
        patches = F.normalize(self.image_proj(tokens.flatten(0, 1)), dim=-1).reshape(*tokens.shape[:2], -1)
        return query, patches

    def forward(self, image: torch.Tensor | None, audio: torch.Tensor | None, pairing: str | None = None,
                negatives: int | None = None, return_attention: bool = False,
                features: tuple[torch.Tensor, torch.Tensor] | None = None) -> LocalizationOutput:
        """image (B, 3, H, W), audio (B, 1, n_mels, T) -> heatmaps (B, rows, cols) of the given pairs.

        ``pairing`` adds the multiple-instance InfoNCE loss over the batch:
        ``joint``: scores from one encoder pass over the true pairs: audio i against the patches of
        image j as the encoder saw it beside audio j (B x B scores).
        ``cross``: one pass over the pairs (image i + k, audio i), k = 0..K (K = ``negatives``,
        default B - 1, batched together): a negative image is encoded beside the very audio it is
        scored against, so neither side can recognise its partner by what fusion leaked into it.
        With ``neutral_partner`` every pair of the batch is scored and ``pairing`` only asks for the loss.

        ``features``: the output of :meth:`neutral_features` for this batch, computed earlier (a frozen
        encoder's cache); image and audio are then not used (pass None) and only the heads run.
        """
        if pairing not in (None, "joint", "cross"):
            raise ConfigError(f"pairing {pairing!r} is not one of {PAIRINGS}")
        if features is not None and (not self.neutral_partner or not self.freeze_encoder or return_attention):
            raise ConfigError("precomputed features stand for a frozen encoder's neutral-partner pass: they need "
                              "freeze_encoder and neutral_partner, and give no attention read-out")
        grid = self.encoder.image.grid_size
        if self.neutral_partner:  # every pair of the batch scored, no leak: pairing is moot
            query, patches = self.project(*(features if features is not None else self.neutral_features(image, audio)))
            loss = info_nce(mil_scores(query, patches, self.mil_top_k), self.temperature) if pairing else None
            attention = None
            if return_attention:
                with torch.no_grad():
                    attention = self.encoder(image, audio, return_attention=True).image_attention
        elif pairing != "cross":
            query, patches, attention = self._embed(image, audio, return_attention)
            loss = info_nce(mil_scores(query, patches, self.mil_top_k), self.temperature) if pairing else None
        else:
            b = image.shape[0]
            k = b - 1 if negatives is None else max(0, min(int(negatives), b - 1))
            images = torch.cat([torch.roll(image, -shift, 0) for shift in range(k + 1)])  # pair (i + shift, i)
            query, patches, attention = self._embed(images, audio.repeat(k + 1, 1, 1, 1), return_attention)
            band = best_patches(torch.einsum("bp,bnp->bn", query, patches), self.mil_top_k).reshape(k + 1, b).t()
            loss = band_info_nce(band, self.temperature)
            query, patches = query[:b], patches[:b]
            attention = [a[:b] for a in attention] if attention is not None else None
        b = query.shape[0]
        heatmap = torch.einsum("bp,bnp->bn", query, patches).reshape(b, *grid)
        return LocalizationOutput(heatmap, query, patches, loss, attention)


def heatmaps(model: nn.Module, image: torch.Tensor, audio: torch.Tensor,
             blocks: str | Sequence[int] = "last") -> dict[str, torch.Tensor]:
    """Every read-out ``model`` offers -> {name: (B, rows, cols) heatmap}.

    A bare encoder gives ``attention`` (when it has fusion blocks); a ContrastiveLocalizer gives
    ``contrastive`` and the ``attention`` of its encoder. ``model`` is the plain model (callers unwrap a
    DDP wrapper). The public read-out that evaluation, inference and the benchmark's figures share.
    """
    encoder = model.encoder if isinstance(model, ContrastiveLocalizer) else model
    with_attention = bool(encoder.fusion_layers)
    out: dict[str, torch.Tensor] = {}
    if isinstance(model, ContrastiveLocalizer):
        result = model(image, audio, return_attention=with_attention)
        out["contrastive"] = result.heatmap
        attention = result.image_attention
    else:
        attention = encoder(image, audio, return_attention=True).image_attention if with_attention else None
    if attention:
        out["attention"] = attention_map(attention, encoder.image.grid_size, blocks)
    return out
