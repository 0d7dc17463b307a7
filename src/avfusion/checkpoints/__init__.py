"""Loading and saving: official checkpoints (weights-only pickles) and our safetensors format.

Every caller reads a checkpoint through ``load(source, expect=...)`` (``avfusion.checkpoints.loading``)
and writes a model's weights through ``save`` / ``save_pretrained`` (``avfusion.checkpoints.pretrained``).
"""
from avfusion.checkpoints.loading import ENCODER_WEIGHTS, MODEL, EncoderWeights, load
from avfusion.checkpoints.official import export_official, load_official, load_stream_init, read_checkpoint
from avfusion.checkpoints.pretrained import from_pretrained, save, save_pretrained

__all__ = ["ENCODER_WEIGHTS", "MODEL", "EncoderWeights", "export_official", "from_pretrained", "load", "load_official",
           "load_stream_init", "read_checkpoint", "save", "save_pretrained"]
