"""What every avfusion model shares: a task name, its constructor options, and save_pretrained."""
from __future__ import annotations

import os

from torch import nn


class AVModel(nn.Module):
    """Base class of the encoder and the task models.

    `task` names the model kind; `options` holds the constructor arguments other than the encoder,
    so that `save_pretrained` / `avfusion.from_pretrained` can rebuild it exactly.
    """

    task = "encoder"
    options: dict

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write weights (`model.safetensors`) and configuration (`config.json`) to `directory`."""
        from avfusion.checkpoints.pretrained import save_pretrained
        save_pretrained(self, directory)
