"""The model layer: streams, fusion blocks, the early-fusion encoder, pretraining and task models.

Models know nothing of data, training or the command line.
"""
from __future__ import annotations

from torch import nn

from avfusion.models.base import AVModel
from avfusion.models.classifier import Classifier, ClassifierOutput
from avfusion.models.encoder import EarlyFusionEncoder, EncoderConfig, EncoderOutput, Tokens
from avfusion.models.presets import PRESETS, encoder_config
from avfusion.models.pretrain import AVMAE, PretrainOutput, patchify, unpatchify

TASKS = ("encoder", "pretrain", "classify", "localize", "separate", "segment")


def build_model(task: str, encoder: EncoderConfig, **options) -> nn.Module:
    """Build the model of `task` around a fresh encoder of the given configuration."""
    enc = EarlyFusionEncoder(encoder)
    if task == "encoder":
        if options:
            raise ValueError(f"the bare encoder takes no options, got {sorted(options)}")
        return enc
    if task == "pretrain":
        return AVMAE(enc, **options)
    if task == "classify":
        return Classifier(enc, **options)
    if task == "localize":
        from avfusion.models.localization import ContrastiveLocalizer
        return ContrastiveLocalizer(enc, **options)
    if task == "separate":
        from avfusion.models.separation import Separator
        return Separator(enc, **options)
    if task == "segment":
        from avfusion.models.segmentation import Segmenter
        return Segmenter(enc, **options)
    raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")


__all__ = ["AVMAE", "AVModel", "Classifier", "ClassifierOutput", "EarlyFusionEncoder", "EncoderConfig", "EncoderOutput",
           "PRESETS", "PretrainOutput", "TASKS", "Tokens", "build_model", "encoder_config", "patchify",
           "unpatchify"]
