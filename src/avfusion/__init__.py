"""avfusion: DeepAVFusion audio-visual early-fusion transformers (Mo & Morgado, CVPR 2024).

    import avfusion
    model = avfusion.load_official("checkpoint_latest.pth")      # official release, strict
    avfusion.save_pretrained(model, "my_model")                   # safetensors + config.json
    model = avfusion.from_pretrained("my_model")

Top-level names are imported lazily, so `import avfusion.metrics` or `avfusion --help` stay light.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "load_official": "avfusion.checkpoints",
    "export_official": "avfusion.checkpoints",
    "from_pretrained": "avfusion.checkpoints",
    "save_pretrained": "avfusion.checkpoints",
    "AVMAE": "avfusion.models",
    "Classifier": "avfusion.models",
    "EarlyFusionEncoder": "avfusion.models",
    "EncoderConfig": "avfusion.models",
    "build_model": "avfusion.models",
    "encoder_config": "avfusion.models",
    "Pipeline": "avfusion.inference",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'avfusion' has no attribute {name!r}")
