"""Weights for downstream tasks: encoder initialisation, models for evaluation, layer-decay ids.

A checkpoint is either a directory written by ``save_pretrained`` (``avfusion.from_pretrained``) or
an official DeepAVFusion ``.pth`` file (``avfusion.load_official``); both are accepted everywhere.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avfusion.errors import CheckpointError

log = logging.getLogger(__name__)

#: Encoder fields that change parameter shapes or meaning; the input sizes are not among them
#: (``pos_embed`` is a fixed sin-cos buffer recomputed for the target grid).
ARCHITECTURE_FIELDS = ("patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "fusion_type",
                       "fusion_layers", "num_fusion_tokens", "fusion_num_heads", "fusion_attn_ratio",
                       "fusion_mlp_ratio")


def _encoder_part(state: dict[str, torch.Tensor], task: str) -> dict[str, torch.Tensor]:
    if task == "encoder" and not any(k.startswith("encoder.") for k in state):
        return dict(state)
    return {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}


def encoder_state(source: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The encoder weights (``encoder.`` prefix removed) of any checkpoint, and its encoder config
    when the checkpoint records one (our directories)."""
    from avfusion.checkpoints.kinds import PRETRAINED, checkpoint_kind

    path = Path(source)
    if checkpoint_kind(path) == PRETRAINED:
        from safetensors.torch import load_file

        from avfusion.checkpoints.pretrained import read_config

        config = read_config(path)
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise CheckpointError(f"{path}: config.json present but model.safetensors is missing")
        state = _encoder_part(load_file(str(weights)), config.get("task", "encoder"))
        encoder_config = config.get("encoder")
    else:
        from avfusion.checkpoints.official import detect_task, read_checkpoint, to_ours

        official = to_ours(read_checkpoint(path))
        state = _encoder_part(official, detect_task(official))
        encoder_config = None
    if not state:
        raise CheckpointError(f"{source}: holds no encoder weights")
    return state, encoder_config


def check_architecture(expected: Any, found: dict[str, Any], source) -> None:
    """Raise if the checkpoint's encoder config differs from the recipe's in an architecture field."""
    wanted = expected.to_dict()
    diffs = [f"{k}: recipe {wanted[k]!r}, checkpoint {found.get(k)!r}" for k in ARCHITECTURE_FIELDS
             if k in found and _norm(found[k]) != _norm(wanted[k])]
    if diffs:
        raise CheckpointError(f"{source}: the encoder does not match the recipe's model section ({'; '.join(diffs)}); "
                              "set the model.* keys to the checkpoint's values")


def _norm(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def load_encoder_init(encoder: nn.Module, source: str | os.PathLike) -> None:
    """Initialise ``encoder`` (an EarlyFusionEncoder) from any checkpoint's encoder, strictly.

    Pretraining, downstream and encoder checkpoints all work; the sin-cos position embeddings are
    the target's own, so input sizes may differ from the checkpoint's.
    """
    from avfusion.checkpoints.official import load_state_strict

    state, config = encoder_state(source)
    if config is not None:
        check_architecture(encoder.config, config, source)
    for stream in ("image", "audio"):
        key = f"{stream}.pos_embed"
        if key in state:
            state[key] = getattr(encoder, stream).pos_embed.detach().clone()
    load_state_strict(encoder, state, source)
    log.info("encoder initialised from %s", source)


def load_task_model(task: str, source: str | os.PathLike, encoder_config: Any, **official_options) -> nn.Module:
    """The ``task`` model ("classify", "separate", "segment") held by a checkpoint, in eval mode.

    Our directories rebuild themselves; official files are built with the recipe's input sizes, head
    counts and fusion-token split (``encoder_config``), which their shapes cannot reveal, and
    ``official_options`` (e.g. the separator's loss flags).
    """
    from avfusion.checkpoints.kinds import PRETRAINED, checkpoint_kind

    path = Path(source)
    if checkpoint_kind(path) == PRETRAINED:
        from avfusion.checkpoints import from_pretrained

        model = from_pretrained(path)
        check_architecture(encoder_config, model.encoder.config.to_dict() if hasattr(model, "encoder") else {}, path)
    else:
        from avfusion.checkpoints import load_official
        from avfusion.checkpoints.official import detect_task, read_checkpoint, to_ours

        state = read_checkpoint(path)  # read once; load_official takes the state dict
        options = official_options if detect_task(to_ours(state)) == task else {}
        c = encoder_config
        try:
            model = load_official(state, image_size=c.image_size, audio_size=c.audio_size, num_heads=c.num_heads,
                                  fusion_num_heads=c.fusion_num_heads, num_fusion_tokens=c.num_fusion_tokens,
                                  **options)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
    found = getattr(model, "task", "encoder")
    if found != task:
        raise CheckpointError(f"{source} holds a {found!r} model, not a {task!r} model; train one with "
                              f"`avfusion train {task} RECIPE model.pretrained={source} --output DIR` and "
                              f"evaluate DIR/final")
    return model.eval()


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
