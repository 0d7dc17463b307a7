"""What kind of checkpoint a path is: decided here, and only here.

- ``PRETRAINED``: a directory written by ``save_pretrained`` (``config.json`` + ``model.safetensors``),
  which records its own task and configuration;
- ``STATE_FILE``: a weights-only PyTorch file holding a state dict: an official DeepAVFusion checkpoint
  (``checkpoint_latest.pth``, ``{"state_dict": ...}``), or an engine checkpoint of a run
  (``checkpoints/step_*.pt``, ``{"model": ...}``); ``read_checkpoint`` reads both.
"""
from __future__ import annotations

import os
from pathlib import Path

from avfusion.errors import CheckpointError

PRETRAINED = "pretrained"
STATE_FILE = "state_file"
CONFIG_FILE = "config.json"


def checkpoint_kind(source: str | os.PathLike) -> str:
    """``PRETRAINED`` or ``STATE_FILE``; a CheckpointError saying what was expected otherwise."""
    path = Path(source)
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise CheckpointError(f"{path}: a directory without {CONFIG_FILE}; give a directory written by "
                                  "save_pretrained (e.g. a run's final/) or a .pth/.pt checkpoint file")
        return PRETRAINED
    if path.is_file():
        return STATE_FILE
    raise CheckpointError(f"{source}: no such checkpoint (expected a save_pretrained directory or a .pth/.pt "
                          "checkpoint file)")
