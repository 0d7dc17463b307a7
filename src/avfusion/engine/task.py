"""The small interface through which the engine sees a task (pretraining, classification, ...)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate


@dataclass
class ParamHints:
    """What the optimizer should know about a model's parameters (names as in ``named_parameters``).

    Attributes:
        layer_id: name -> depth index (0: embeddings, ..., num_layers: head); needed for layer decay.
        num_layers: the largest layer id; None: the largest id over the parameters.
        pretrained: name -> whether it belongs to a pretrained stream (its lr follows the stream ramp).
        no_weight_decay: names without weight decay besides biases, norms and 1-D parameters
            (e.g. ``pos_embed``, ``cls_token``).
    """

    layer_id: Callable[[str], int] | None = None
    num_layers: int | None = None
    pretrained: Callable[[str], bool] | None = None
    no_weight_decay: Collection[str] = ()


class Evaluation(Protocol):
    """What an evaluation returns: any report whose ``metrics()`` are the numbers the engine logs."""

    def metrics(self) -> dict[str, float]:
        """{"name": value} of this evaluation."""


@dataclass(frozen=True)
class Metrics:
    """An evaluation that is nothing but its numbers (tasks without a richer report)."""

    values: Mapping[str, float]

    def metrics(self) -> dict[str, float]:
        return dict(self.values)


class Task(ABC):
    """A training problem built from its recipe: model, data, loss, and optionally evaluation.

    ``cfg`` is the whole recipe (a dataclass with a ``train`` section of type TrainConfig, the only part
    the engine reads); it is given once, to the constructor, and every method reads it from ``self.cfg``,
    so no method depends on another having been called first. Methods are called on every process.
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    @abstractmethod
    def build_model(self) -> nn.Module:
        """A fresh model on the CPU; the engine seeds the RNG before calling and moves it to the device."""

    @abstractmethod
    def train_dataset(self) -> Dataset:
        """The map-style training set (the engine shards and shuffles it; it calls the set's
        ``set_epoch(epoch)``, when it has one, before each epoch's iteration, also after a resume)."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
        """Scalar loss (mean over the batch) and named values to log.

        ``model`` may be wrapped (DDP, torch.compile): call it, and use ``unwrap(model)`` for attributes.
        """

    def data_errors(self) -> tuple[str, float]:
        """How training treats an item that fails to decode: (``"raise"`` or ``"skip"``, the largest
        fraction of an epoch's items that may fail before the run stops). Skipped items are dropped
        from their batch (never replaced), logged, and listed in ``OUTPUT/data_errors.jsonl``.
        Evaluation is always strict. Default: ``cfg.data.on_error`` and ``cfg.data.max_error_fraction``
        when the recipe has them, else ("raise", 0.01)."""
        data = getattr(self.cfg, "data", None)
        return str(getattr(data, "on_error", "raise")), float(getattr(data, "max_error_fraction", 0.01))

    def eval_dataset(self) -> Dataset | None:
        """The evaluation set, or None for no evaluation."""
        return None

    def evaluate(self, model: nn.Module, loader: Any) -> Evaluation:
        """A new report over this rank's share of ``loader`` (gather across ranks here), the same on every
        rank; model in eval mode. The engine logs its ``metrics()`` and returns the report to the caller."""
        return Metrics({})

    def param_hints(self, model: nn.Module) -> ParamHints:
        """Layer ids, pretrained streams and extra no-decay names of ``model``."""
        return ParamHints()

    def collate(self, samples: list) -> Any:
        """Samples -> batch."""
        return default_collate(samples)

    def batch_size(self, batch: Any) -> int:
        """Number of samples in ``batch`` (for samples/s)."""
        first = batch
        while isinstance(first, (list, tuple, dict)):
            first = next(iter(first.values())) if isinstance(first, dict) else first[0]
        return int(first.shape[0]) if isinstance(first, torch.Tensor) else 1

    def to_device(self, batch: Any, device: torch.device) -> Any:
        """Move every tensor of ``batch`` to ``device``."""
        if isinstance(batch, torch.Tensor):
            return batch.to(device, non_blocking=True)
        if isinstance(batch, dict):
            return {k: self.to_device(v, device) for k, v in batch.items()}
        if isinstance(batch, (list, tuple)):
            moved = [self.to_device(v, device) for v in batch]
            return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
        return batch

    def save_final(self, model: nn.Module, directory: Path) -> None:
        """Write the final weights (``avfusion.checkpoints.save``): ``save_pretrained`` for avfusion models
        (weights and the configuration that rebuilds them), else ``model.safetensors`` with the state dict;
        atomically."""
        from avfusion.checkpoints import save

        save(model, directory)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model
