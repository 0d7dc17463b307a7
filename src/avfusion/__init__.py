"""avfusion: DeepAVFusion audio-visual early-fusion transformers (Mo & Morgado, CVPR 2024).

    import avfusion
    model = avfusion.load_official("checkpoint_latest.pth")      # official release, strict
    model.save_pretrained("my_model")                             # safetensors + config.json
    model = avfusion.from_pretrained("my_model")
"""

__version__ = "0.1.0"

from avfusion.checkpoints import export_official, from_pretrained, load_official  # noqa: E402
from avfusion.models import (  # noqa: E402
    AVMAE,
    Classifier,
    EarlyFusionEncoder,
    EncoderConfig,
    build_model,
    encoder_config,
)

__all__ = ["AVMAE", "Classifier", "EarlyFusionEncoder", "EncoderConfig", "__version__", "build_model",
           "encoder_config", "export_official", "from_pretrained", "load_official"]
