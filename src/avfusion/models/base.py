"""What every avfusion model shares: a task name and its constructor options (what
``avfusion.save_pretrained`` writes beside the weights so that ``from_pretrained`` can rebuild it)."""
from __future__ import annotations

from torch import nn


class AVModel(nn.Module):
    """Base class of the encoder and the task models.

    `task` names the model kind; `options` holds the constructor arguments other than the encoder,
    so that `avfusion.save_pretrained` / `avfusion.from_pretrained` can rebuild it exactly. (Writing
    is the checkpoints layer's business: models import nothing of it.)
    """

    task = "encoder"
    options: dict
    #: A task model whose `encoder` is frozen: no gradients, and eval mode whatever `train()` is asked.
    freeze_encoder: bool = False

    def train(self, mode: bool = True) -> "AVModel":
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.train(False)
        return self

    def _freeze(self, freeze: bool) -> None:
        """Set `freeze_encoder` and take the encoder's parameters out of training when it is set."""
        self.freeze_encoder = freeze
        if freeze:
            for p in self.encoder.parameters():
                p.requires_grad_(False)

    def official_layout_conflict(self) -> str | None:
        """Why the official checkpoint layout cannot hold this model (an option the official code does not
        have), or None: the official architectures. ``avfusion.export_official`` refuses on a reason."""
        return None
