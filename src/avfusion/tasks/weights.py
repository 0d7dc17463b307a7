"""Weights for downstream tasks: encoder initialisation, models for evaluation, layer-decay ids.

A checkpoint is either a directory written by ``save_pretrained`` (``avfusion.from_pretrained``) or
an official DeepAVFusion ``.pth`` file (``avfusion.load_official``); both are accepted everywhere, each
read through ``avfusion.checkpoints.load``.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any

from torch import nn

log = logging.getLogger(__name__)


def load_encoder_init(encoder: nn.Module, source: str | os.PathLike) -> None:
    """Initialise ``encoder`` (an EarlyFusionEncoder) from any checkpoint's encoder, strictly.

    Pretraining, downstream and encoder checkpoints all work; the sin-cos position embeddings are
    the target's own, so input sizes may differ from the checkpoint's. A checkpoint that records its
    encoder must match ``encoder``'s architecture.
    """
    from avfusion.checkpoints import ENCODER_WEIGHTS, load
    from avfusion.checkpoints.official import load_state_strict

    state = dict(load(source, expect=ENCODER_WEIGHTS, recipe=encoder.config).state)
    for stream in ("image", "audio"):
        key = f"{stream}.pos_embed"
        if key in state:
            state[key] = getattr(encoder, stream).pos_embed.detach().clone()
    load_state_strict(encoder, state, source)
    log.info("encoder initialised from %s", source)


def load_task_model(task: str, source: str | os.PathLike, encoder_config: Any, **official_options) -> nn.Module:
    """The ``task`` model ("classify", "separate", "segment") held by a checkpoint, in eval mode.

    Our directories rebuild themselves (their encoder must match ``encoder_config``'s architecture);
    official files are built with the recipe's input sizes, head counts and fusion-token split
    (``encoder_config``), which their shapes cannot reveal, and ``official_options`` (e.g. the
    separator's loss flags).
    """
    from avfusion.checkpoints import load

    return load(source, expect=task, recipe=encoder_config, options=official_options).eval()


_BLOCK = re.compile(r"^encoder\.(?:image\.blocks|audio\.blocks|fusion_blocks)\.(\d+)\.")
_EMBED = ("encoder.fusion_tokens", "encoder.image.patch_embed.", "encoder.audio.patch_embed.",
          "encoder.image.pos_embed", "encoder.audio.pos_embed")


def layer_id_fn(depth: int):
    """Layer ids for layer-wise lr decay, as the official recipes assign them: embeddings and fusion
    tokens 0, block ``i`` (stream or fusion) ``i + 1``, final norms and every head ``depth + 1``."""

    def layer_id(name: str) -> int:
        if name.startswith(_EMBED):
            return 0
        match = _BLOCK.match(name)
        return int(match.group(1)) + 1 if match else depth + 1

    return layer_id


def encoder_param_hints(model: nn.Module, init_streams: tuple[str, ...] = ()):
    """ParamHints of a task model around ``model.encoder``: official layer ids (layer decay), and the
    streams initialised from MAE / AudioMAE files marked pretrained (their lr follows the stream ramp)."""
    from avfusion.engine import ParamHints, unwrap

    depth = unwrap(model).encoder.depth
    prefixes = tuple(f"encoder.{s}." for s in init_streams)
    return ParamHints(layer_id=layer_id_fn(depth), num_layers=depth + 1,
                      pretrained=(lambda name: name.startswith(prefixes)) if prefixes else None)
