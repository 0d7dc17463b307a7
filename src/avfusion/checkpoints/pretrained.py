"""Our own format: a directory with `model.safetensors` and `config.json` (no pickles at all)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from avfusion import __version__
from avfusion.checkpoints.io import atomic_path
from avfusion.errors import CheckpointError

FORMAT = "avfusion"
FORMAT_VERSION = 1


def save_pretrained(model: torch.nn.Module, directory: str | os.PathLike) -> Path:
    """Write weights (safetensors) and the configuration (JSON) that rebuilds the model."""
    directory = Path(directory)
    encoder = model if getattr(model, "task", "encoder") == "encoder" else model.encoder
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "avfusion_version": __version__,
              "task": getattr(model, "task", "encoder"), "encoder": encoder.config.to_dict(),
              "options": dict(getattr(model, "options", {}))}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    with atomic_path(directory / "config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")
    return directory


def read_config(directory: str | os.PathLike) -> dict:
    path = Path(directory) / "config.json"
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


def from_pretrained(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a model saved with `save_pretrained` and load its weights strictly (eval mode)."""
    from avfusion.checkpoints.official import load_state_strict
    from avfusion.models import build_model
    from avfusion.models.encoder import EncoderConfig

    config = read_config(directory)
    weights = Path(directory) / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{directory}: config.json present but model.safetensors is missing")
    model = build_model(config["task"], EncoderConfig(**config["encoder"]), **config["options"])
    try:
        state = load_file(str(weights), device=str(map_location))
    except Exception as exc:
        raise CheckpointError(f"{weights}: cannot be read as safetensors ({exc})") from exc
    load_state_strict(model, state, weights)
    return model.eval()
