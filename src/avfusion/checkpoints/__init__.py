"""Loading and saving: official checkpoints (weights-only pickles) and our safetensors format."""
from avfusion.checkpoints.official import export_official, load_official, load_stream_init, read_checkpoint
from avfusion.checkpoints.pretrained import from_pretrained, save_pretrained

__all__ = ["export_official", "from_pretrained", "load_official", "load_stream_init", "read_checkpoint",
           "save_pretrained"]
