"""Loading any checkpoint for inference, and what each kind of checkpoint can do.

A checkpoint is a `save_pretrained` directory (any task, the contrastive localiser included) or an
official DeepAVFusion `.pth` file. A pretraining model is reduced to its encoder (the MAE decoders
play no part in inference).
"""
from __future__ import annotations

import dataclasses
import logging
import os

from torch import nn

from avfusion.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

def load_model(source: str | os.PathLike, **load_kwargs) -> nn.Module:
    """The model a checkpoint holds (``avfusion.checkpoints.load``), ready for inference (`for_inference`);
    `load_kwargs` go to `avfusion.load_official` (image_size, audio_size, num_heads, ... that an official
    file's shapes cannot reveal) and are refused for a directory, which records its own."""
    from avfusion.checkpoints import MODEL, load

    return for_inference(load(source, expect=MODEL, official=load_kwargs))


def for_inference(model: nn.Module) -> nn.Module:
    """The model in eval mode; a pretraining model reduced to its encoder."""
    if task_of(model) == "pretrain":
        model = model.encoder
    return model.eval()


def task_of(model: nn.Module) -> str:
    return getattr(model, "task", "encoder")


def encoder_of(model: nn.Module) -> nn.Module:
    return model if task_of(model) == "encoder" else model.encoder


def check_supports(model: nn.Module, method: str, source: str) -> None:
    """Raise CheckpointError when `model` cannot do `method` (its record's `needs`), saying what checkpoint
    would (its `train_hint`)."""
    from avfusion.inference.methods import INFERENCE

    record = INFERENCE[method]
    task, needs = task_of(model), record.needs
    if "any" in needs or task in needs:
        return
    if "fusion" in needs and encoder_of(model).fusion_layers:
        return
    raise CheckpointError(f"{source}: a checkpoint of kind {task!r} cannot {method}; use {record.train_hint}")


def with_audio_frames(model: nn.Module, frames: int) -> nn.Module:
    """The same model rebuilt for spectrograms of `frames` frames (the sin-cos positions recomputed)."""
    from avfusion.audio import FRAMES_PER_SECOND
    from avfusion.checkpoints.official import load_state_strict
    from avfusion.models import build_model

    encoder = encoder_of(model)
    config = encoder.config
    if frames == config.audio_size[1]:
        return model
    if frames % config.patch_size:
        raise ConfigError(f"the window must give a multiple of {config.patch_size} spectrogram frames "
                          f"({FRAMES_PER_SECOND} per second): {frames} frames; use a multiple of "
                          f"{config.patch_size / FRAMES_PER_SECOND:g} s")
    config = dataclasses.replace(config, audio_size=(config.audio_size[0], frames))
    task = task_of(model)
    rebuilt = build_model(task, config, **dict(getattr(model, "options", {})))
    state = model.state_dict()
    key = "audio.pos_embed" if task == "encoder" else "encoder.audio.pos_embed"
    state[key] = rebuilt.state_dict()[key]
    load_state_strict(rebuilt, state, "the rebuilt model")
    log.info("model trained on %.2f s of audio runs on %.2f s windows", encoder.config.audio_size[1] / FRAMES_PER_SECOND,
             frames / FRAMES_PER_SECOND)
    return rebuilt.eval()
