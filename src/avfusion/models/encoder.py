"""The early-fusion encoder: two ViT streams that exchange information through fusion tokens."""
from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from avfusion.models.base import AVModel
from avfusion.models.fusion import FUSION_TYPES, FusionBlock
from avfusion.models.layers import drop_path_rates, init_linear_and_norm
from avfusion.models.stream import ModalityStream


@dataclass
class EncoderConfig:
    """Every hyper-parameter of the encoder (timm's names). Defaults: the released ViT-B models."""

    image_size: tuple[int, int] = (224, 224)
    audio_size: tuple[int, int] = (128, 192)  # (mel bins, frames)
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    fusion_type: str = "factorized"  # factorized | dense | token | none
    fusion_layers: str = "all"  # "all", "none", "5", or 0-based indices "0-4-8"
    num_fusion_tokens: tuple[int, int, int] = (16, 8, 8)  # (fusion, image-agg, audio-agg)
    fusion_num_heads: int = 12
    fusion_attn_ratio: float = 0.25
    fusion_mlp_ratio: float = 1.0
    drop: float = 0.0
    attn_drop: float = 0.0
    drop_path: float = 0.0

    def __post_init__(self):
        self.image_size = tuple(self.image_size)
        self.audio_size = tuple(self.audio_size)
        self.num_fusion_tokens = tuple(self.num_fusion_tokens)
        self.fusion_layers = str(self.fusion_layers)
        if self.fusion_type not in FUSION_TYPES:
            raise ValueError(f"fusion_type {self.fusion_type!r} is not one of {FUSION_TYPES}")
        parse_fusion_layers(self.fusion_layers, self.depth)  # validates

    def to_dict(self) -> dict:
        return asdict(self)


#: EncoderConfig fields a recipe takes from its data section (the input sizes), not from its model section
INPUT_FIELDS = ("image_size", "audio_size")
#: EncoderConfig fields that change neither a parameter's shape nor its meaning (regularisation in training)
REGULARISATION_FIELDS = ("drop", "attn_drop", "drop_path")


def encoder_fields(*, inputs: bool = True, regularisation: bool = True) -> dict[str, typing.Any]:
    """{name: type} of EncoderConfig's fields, in their order; ``inputs=False`` leaves out ``INPUT_FIELDS``,
    ``regularisation=False`` ``REGULARISATION_FIELDS``. What else describes an encoder (a recipe's model
    section, the architecture a checkpoint must match) is derived from this, so a field is written once."""
    hints = typing.get_type_hints(EncoderConfig)
    left_out = (() if inputs else INPUT_FIELDS) + (() if regularisation else REGULARISATION_FIELDS)
    return {f.name: hints[f.name] for f in fields(EncoderConfig) if f.name not in left_out}


def parse_fusion_layers(spec: str | int, depth: int) -> list[int]:
    """"all" | "none" | int | "0-4-8" -> sorted 0-based block indices that get a fusion block."""
    spec = str(spec)
    if spec == "all":
        return list(range(depth))
    if spec == "none":
        return []
    try:
        layers = sorted({int(part) for part in spec.split("-")})
    except ValueError:
        raise ValueError(f"fusion_layers {spec!r}: use 'all', 'none', an index, or indices like '0-4-8'") from None
    if any(not 0 <= layer < depth for layer in layers):
        raise ValueError(f"fusion_layers {spec!r}: indices must lie in 0..{depth - 1}")
    return layers


def format_fusion_layers(layers: list[int], depth: int) -> str:
    """Inverse of `parse_fusion_layers` (canonical form)."""
    if len(layers) == depth:
        return "all"
    return "-".join(str(layer) for layer in layers) if layers else "none"


@dataclass
class Tokens:
    """Tokens of the three kinds, each (B, N, D)."""

    image: torch.Tensor
    audio: torch.Tensor
    fusion: torch.Tensor


@dataclass
class EncoderOutput(Tokens):
    """Final tokens after the final norms; `layers` holds per-block tokens before them when asked."""

    layers: list[Tokens] | None = field(default=None)
    # per fusion block (in layer order): (B, Mq, N_image) attention of fusion tokens over image tokens
    image_attention: list[torch.Tensor] | None = field(default=None)


class EarlyFusionEncoder(AVModel):
    """DeepAVFusion encoder (docs/model.md, the early-fusion encoder).

    At a layer with a fusion block, each stream block reads [fusion tokens, own tokens] and its fusion
    outputs are dropped; the fusion block reads the block INPUTS. Layers without one run the streams
    alone. With no fusion block at all the streams are independent (late-fusion baseline).
    """

    def __init__(self, config: EncoderConfig | None = None, **overrides):
        super().__init__()
        config = EncoderConfig(**{**(asdict(config) if config else {}), **overrides})
        self.config = config
        self.options = {}
        self.embed_dim = config.embed_dim
        self.depth = config.depth
        stream_kw = dict(patch_size=config.patch_size, embed_dim=config.embed_dim, depth=config.depth,
                         num_heads=config.num_heads, mlp_ratio=config.mlp_ratio, drop=config.drop,
                         attn_drop=config.attn_drop, drop_path=config.drop_path)
        self.image = ModalityStream(config.image_size, 3, **stream_kw)
        self.audio = ModalityStream(config.audio_size, 1, **stream_kw)
        self.num_fusion_tokens = config.num_fusion_tokens
        self.fusion_tokens = nn.Parameter(torch.zeros(1, sum(config.num_fusion_tokens), config.embed_dim))
        self.fusion_layers = parse_fusion_layers(config.fusion_layers, config.depth)
        if config.fusion_type == "none":
            self.fusion_layers = []
        rates = drop_path_rates(config.drop_path, config.depth)
        # A ModuleList with None at layers without fusion: keys are fusion_blocks.{layer}.
        self.fusion_blocks = nn.ModuleList([
            FusionBlock(config.fusion_type, config.embed_dim, config.fusion_num_heads,
                        config.num_fusion_tokens, config.fusion_attn_ratio, config.fusion_mlp_ratio,
                        drop=config.drop, attn_drop=config.attn_drop, drop_path=rates[layer])
            if layer in self.fusion_layers else None
            for layer in range(config.depth)])
        self.fusion_norm = nn.LayerNorm(config.embed_dim)
        self.reset_fusion_parameters()

    def reset_fusion_parameters(self) -> None:
        """Official init of the fusion parts (the streams keep their own or loaded weights)."""
        nn.init.normal_(self.fusion_tokens, std=0.02)
        init_linear_and_norm(self.fusion_blocks)

    def forward(self, image: torch.Tensor, audio: torch.Tensor, image_ids_keep: torch.Tensor | None = None,
                audio_ids_keep: torch.Tensor | None = None, return_layers: bool = False,
                return_attention: bool = False) -> EncoderOutput:
        """image (B, 3, H, W), audio (B, 1, F, T); ids_keep (B, K) select the visible patches.
        `return_attention` adds each fusion block's attention over the image tokens (localisation)."""
        x_image = self.image.embed(image, image_ids_keep)
        x_audio = self.audio.embed(audio, audio_ids_keep)
        x_fusion = self.fusion_tokens.expand(image.shape[0], -1, -1)
        n_fusion = x_fusion.shape[1]
        layers, attention = [], []
        for block_image, block_audio, block_fusion in zip(self.image.blocks, self.audio.blocks,
                                                          self.fusion_blocks):
            if block_fusion is None:
                x_image, x_audio = block_image(x_image), block_audio(x_audio)
            else:
                if return_attention:
                    attention.append(block_fusion.image_attention(x_fusion, x_image, x_audio))
                new_image = block_image(torch.cat([x_fusion, x_image], 1))[:, n_fusion:]
                new_audio = block_audio(torch.cat([x_fusion, x_audio], 1))[:, n_fusion:]
                x_fusion = block_fusion(x_fusion, x_image, x_audio)
                x_image, x_audio = new_image, new_audio
            if return_layers:
                layers.append(Tokens(x_image, x_audio, x_fusion))
        return EncoderOutput(self.image.norm(x_image), self.audio.norm(x_audio), self.fusion_norm(x_fusion),
                             layers if return_layers else None, attention if return_attention else None)
