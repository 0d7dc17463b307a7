"""The encoder's hyper-parameters are written once, in `EncoderConfig`: a recipe's `model:` section and the
architecture a checkpoint must match are derived from its fields."""
from __future__ import annotations

import dataclasses
import typing

from avfusion.checkpoints.loading import ARCHITECTURE_FIELDS
from avfusion.models import EncoderConfig
from avfusion.models.encoder import INPUT_FIELDS, REGULARISATION_FIELDS
from avfusion.tasks.common import ENCODER_KEYS, DataConfig, ModelConfig, encoder_config_for


def test_the_model_section_is_every_encoder_field_but_the_input_sizes():
    encoder = [f.name for f in dataclasses.fields(EncoderConfig)]
    assert ENCODER_KEYS == tuple(k for k in encoder if k not in INPUT_FIELDS)
    assert ARCHITECTURE_FIELDS == tuple(k for k in ENCODER_KEYS if k not in REGULARISATION_FIELDS)
    assert [f.name for f in dataclasses.fields(ModelConfig)] == ["preset", *ENCODER_KEYS, "image_init", "audio_init"]
    hints, encoder_hints = typing.get_type_hints(ModelConfig), typing.get_type_hints(EncoderConfig)
    for key in ENCODER_KEYS:
        assert hints[key] == (encoder_hints[key] | None) and getattr(ModelConfig(), key) is None, key


def test_every_model_key_reaches_the_encoder():
    values = dict(patch_size=8, embed_dim=64, depth=3, num_heads=4, mlp_ratio=2.0, fusion_type="dense",
                  fusion_layers="0-2", num_fusion_tokens=(4, 2, 2), fusion_num_heads=2, fusion_attn_ratio=0.5,
                  fusion_mlp_ratio=2.0, drop=0.1, attn_drop=0.2, drop_path=0.3)
    assert set(values) == set(ENCODER_KEYS)
    config = encoder_config_for(ModelConfig(preset="tiny", **values), DataConfig(image_size=32, window=1.0))
    assert {k: getattr(config, k) for k in ENCODER_KEYS} == values
    assert config.image_size == (32, 32) and config.audio_size == (128, 64)
