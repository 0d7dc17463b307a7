"""The one way to read a checkpoint: ``load(source, expect=...)``, whatever its kind, for every caller.

A checkpoint is a ``save_pretrained`` directory (it records its task and configuration) or a
weights-only PyTorch state file (an official DeepAVFusion ``.pth``, or an engine ``step_*.pt``);
``checkpoint_kind`` tells them apart, and only this module asks it. ``expect`` says what the caller
wants from it:

- ``MODEL``: the model it holds, whatever its task, in eval mode;
- a task of ``avfusion.models.TASKS`` ("encoder", "pretrain", "classify", "localize", "separate",
  "segment"): the model it holds, which must be of that task (a CheckpointError says what it holds
  instead, before anything is built);
- ``ENCODER_WEIGHTS``: its encoder's weights (``EncoderWeights``), without building a model, from a
  checkpoint of any task.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from avfusion.checkpoints.kinds import PRETRAINED, checkpoint_kind
from avfusion.errors import CheckpointError, ConfigError
from avfusion.models.encoder import encoder_fields

MODEL = "model"
ENCODER_WEIGHTS = "encoder_weights"
#: the tasks whose models ``avfusion train TASK`` trains (the hint of a mismatch names the command)
TRAINED_DOWNSTREAM = ("classify", "localize", "separate", "segment")

#: Encoder fields that change parameter shapes or meaning: neither the input sizes (``pos_embed`` is a fixed
#: sin-cos buffer recomputed for the target grid) nor the regularisation.
ARCHITECTURE_FIELDS = tuple(encoder_fields(inputs=False, regularisation=False))


@dataclass(frozen=True)
class EncoderWeights:
    """What ``load(..., expect=ENCODER_WEIGHTS)`` returns: the encoder part of a checkpoint.

    Attributes:
        state: the encoder's tensors, names without the ``encoder.`` prefix.
        config: the encoder configuration the checkpoint records (``EncoderConfig.to_dict()``; our
            directories), or None (state files record none).
        task: the task of the model the checkpoint holds.
    """

    state: dict[str, torch.Tensor]
    config: dict[str, Any] | None
    task: str


def expectations() -> tuple[str, ...]:
    """Every value ``load``'s ``expect`` accepts."""
    from avfusion.models import TASKS

    return (MODEL, ENCODER_WEIGHTS, *TASKS)


def load(source: str | os.PathLike, expect: str = MODEL, *, recipe: Any = None,
         options: Mapping[str, Any] | None = None, official: Mapping[str, Any] | None = None
         ) -> nn.Module | EncoderWeights:
    """Read the checkpoint at ``source`` as ``expect`` asks (see the module); models come in eval mode.

    Args:
        recipe: the ``EncoderConfig`` the caller's recipe describes. A directory's recorded encoder must
            match it in every ``ARCHITECTURE_FIELDS`` field; an official file's model is built with its
            input sizes, head counts and fusion-token split (which the file's shapes cannot reveal).
        options: constructor options of the expected task's model for an official file (e.g. the
            separator's ``weighted_loss``); a directory records its own and ignores them.
        official: keyword arguments of ``avfusion.load_official`` given by a user (``image_size``,
            ``audio_size``, ``num_heads``, ...); a directory records its own configuration, so giving
            them for one is a ConfigError.

    Raises CheckpointError when the path is no checkpoint, cannot be read, does not hold what ``expect``
    asks, or does not fit; ConfigError for an ``expect`` or arguments that do not apply.
    """
    if expect not in expectations():
        raise ConfigError(f"expect={expect!r}: choose one of {', '.join(expectations())}")
    path = Path(source)
    directory = checkpoint_kind(path) == PRETRAINED
    if directory and official:
        raise ConfigError(f"{path} records its own configuration; {sorted(official)} apply to official "
                          ".pth files only")
    if expect == ENCODER_WEIGHTS:
        if options or official:
            raise ConfigError(f"expect={ENCODER_WEIGHTS!r} builds no model; options and official do not apply")
        weights = _directory_encoder(path) if directory else _file_encoder(path)
        if recipe is not None and weights.config is not None:
            check_architecture(recipe, weights.config, source)
        return weights
    if directory:
        return _directory_model(path, expect, recipe)
    return _file_model(path, expect, recipe, dict(options or {}), dict(official or {}))


def recorded_task(source: str | os.PathLike) -> str | None:
    """The task a ``save_pretrained`` directory records; None for a state file, which records none."""
    from avfusion.checkpoints.pretrained import read_config

    path = Path(source)
    if checkpoint_kind(path) != PRETRAINED:
        return None
    return read_config(path).get("task", "encoder")


def check_architecture(expected: Any, found: Mapping[str, Any], source) -> None:
    """Raise if a checkpoint's encoder config (``found``) differs from the recipe's ``EncoderConfig``
    (``expected``) in an architecture field."""
    wanted = expected.to_dict()
    diffs = [f"{k}: recipe {wanted[k]!r}, checkpoint {found.get(k)!r}" for k in ARCHITECTURE_FIELDS
             if k in found and _norm(found[k]) != _norm(wanted[k])]
    if diffs:
        raise CheckpointError(f"{source}: the encoder does not match the recipe's model section ({'; '.join(diffs)}); "
                              "set the model.* keys to the checkpoint's values")


def _norm(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _check_task(source, found: str, expect: str) -> None:
    if expect in (MODEL, found):
        return
    hint = (f"; train one with `avfusion train {expect} RECIPE model.pretrained={source} --output DIR` and "
            "evaluate DIR/final" if expect in TRAINED_DOWNSTREAM else "")
    raise CheckpointError(f"{source} holds a {found!r} model, not a {expect!r} model{hint}")


def _encoder_part(state: Mapping[str, torch.Tensor], task: str) -> dict[str, torch.Tensor]:
    if task == "encoder" and not any(k.startswith("encoder.") for k in state):
        return dict(state)
    return {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}


def _encoder_weights(path: Path, state: Mapping[str, torch.Tensor], config, task: str) -> EncoderWeights:
    encoder = _encoder_part(state, task)
    if not encoder:
        raise CheckpointError(f"{path}: holds no encoder weights")
    return EncoderWeights(encoder, config, task)


def _directory_encoder(path: Path) -> EncoderWeights:
    from avfusion.checkpoints.pretrained import read_config, read_weights

    config = read_config(path)
    return _encoder_weights(path, read_weights(path), config.get("encoder"), config.get("task", "encoder"))


def _file_encoder(path: Path) -> EncoderWeights:
    state, task = _read_file(path)
    return _encoder_weights(path, state, None, task)


def _directory_model(path: Path, expect: str, recipe: Any) -> nn.Module:
    from avfusion.checkpoints.pretrained import from_pretrained, read_config

    _check_task(path, read_config(path).get("task", "encoder"), expect)
    model = from_pretrained(path)
    if recipe is not None:
        encoder = model if getattr(model, "task", "encoder") == "encoder" else model.encoder
        check_architecture(recipe, encoder.config.to_dict(), path)
    return model


def _file_model(path: Path, expect: str, recipe: Any, options: dict[str, Any], official: dict[str, Any]
                ) -> nn.Module:
    from avfusion.checkpoints.official import official_model

    state, task = _read_file(path)
    _check_task(path, task, expect)
    if recipe is not None:
        c = recipe
        official = {"image_size": c.image_size, "audio_size": c.audio_size, "num_heads": c.num_heads,
                    "fusion_num_heads": c.fusion_num_heads, "num_fusion_tokens": c.num_fusion_tokens, **official}
    return official_model(state, os.fspath(path), **official, **options)


def _read_file(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """A state file's state dict (our names) and the task of the model it holds."""
    from avfusion.checkpoints.official import detect_task, read_checkpoint, to_ours

    state = to_ours(read_checkpoint(path))
    try:
        return state, detect_task(state)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
