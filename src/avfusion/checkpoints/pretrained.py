"""Our own format: a directory with `model.safetensors` and `config.json` (no pickles at all).

This module is the only one that writes or reads that directory: ``save_pretrained`` (an avfusion
model: weights and the configuration that rebuilds it), ``save_weights`` (a bare state dict, for
models without a configuration), ``read_config`` and ``read_weights``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from avfusion import __version__
from avfusion.checkpoints.io import atomic_path
from avfusion.checkpoints.kinds import CONFIG_FILE
from avfusion.errors import CheckpointError

FORMAT = "avfusion"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"


def save_pretrained(model: torch.nn.Module, directory: str | os.PathLike) -> Path:
    """Write weights (safetensors) and the configuration (JSON) that rebuilds the model, each atomically."""
    directory = Path(directory)
    encoder = model if getattr(model, "task", "encoder") == "encoder" else model.encoder
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "avfusion_version": __version__,
              "task": getattr(model, "task", "encoder"), "encoder": encoder.config.to_dict(),
              "options": dict(getattr(model, "options", {}))}
    save_weights(model, directory, metadata={"format": FORMAT})
    with atomic_path(directory / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")
    return directory


def save(model: torch.nn.Module, directory: str | os.PathLike) -> Path:
    """A model's weights as a directory, atomically: ``save_pretrained`` for an avfusion model (weights and
    the configuration that rebuilds it), ``save_weights`` alone (``model.safetensors``) for any other module."""
    from avfusion.models.base import AVModel

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(model, AVModel):
        return save_pretrained(model, directory)
    save_weights(model, directory)
    return directory


def save_weights(model: torch.nn.Module, directory: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s state dict as ``directory/model.safetensors`` (on the CPU, contiguous), atomically:
    a temporary file beside it, renamed into place. Returns the file's path."""
    path = Path(directory) / WEIGHTS_FILE
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path


def read_config(directory: str | os.PathLike) -> dict:
    """The ``config.json`` of a directory written by ``save_pretrained``, checked to be ours and not too new."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: no config.json; expected a directory written by save_pretrained "
                              "(for official .pth files use avfusion.load_official)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an avfusion model config (format={config.get('format')!r})")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {config['format_version']} is newer than this "
                              f"avfusion ({__version__}) understands; upgrade avfusion")
    return config


def read_weights(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The state dict in ``directory/model.safetensors`` of a directory whose ``config.json`` was read."""
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{directory}: config.json present but model.safetensors is missing")
    try:
        return load_file(str(weights), device=str(map_location))
    except Exception as exc:  # re-raised with the file named
        raise CheckpointError(f"{weights}: cannot be read as safetensors ({exc})") from exc


def from_pretrained(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a model saved with `save_pretrained` and load its weights strictly (eval mode)."""
    from avfusion.checkpoints.official import load_state_strict
    from avfusion.models import build_model
    from avfusion.models.encoder import EncoderConfig

    config = read_config(directory)
    state = read_weights(directory, map_location)
    model = build_model(config["task"], EncoderConfig(**config["encoder"]), **config["options"])
    load_state_strict(model, state, Path(directory) / WEIGHTS_FILE)
    return model.eval()
