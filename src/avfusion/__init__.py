"""avfusion: DeepAVFusion audio-visual early-fusion transformers."""

__version__ = "0.1.0"
