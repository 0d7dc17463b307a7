"""Named stream sizes (timm's ViT family) and the encoder configurations built from them."""
from __future__ import annotations

from avfusion.models.encoder import EncoderConfig

# embed_dim, depth, num_heads (and patch size where it differs): the ViT family of the paper.
PRESETS: dict[str, dict] = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
    "large": dict(embed_dim=1024, depth=24, num_heads=16),
    "huge": dict(embed_dim=1280, depth=32, num_heads=16, patch_size=14),
}

# Head counts the official code uses for a width; a checkpoint's shapes cannot tell them.
DEFAULT_NUM_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}


def encoder_config(preset: str = "base", **overrides) -> EncoderConfig:
    """EncoderConfig of a named preset; fusion heads default to the stream's head count."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    values = {**PRESETS[preset], **overrides}
    values.setdefault("fusion_num_heads", values["num_heads"])
    return EncoderConfig(**values)
