"""Typed errors. Every error names the file or object at fault and says what to do."""
from __future__ import annotations


class AvfusionError(Exception):
    """Base class of every error this library raises on purpose."""


class DecodeError(AvfusionError):
    """A media file could not be decoded as asked (missing, damaged, lacking a stream, time out of range).

    ``where`` says which sample needed the file (e.g. "item 'abc' of vggsound/train"), once, whoever adds it.
    """

    def __init__(self, path, reason: str, where: str | None = None):
        self.path = str(path)
        self.reason = reason
        self.where = where
        super().__init__(f"{self.path}: {reason}" + (f" [{where}]" if where else ""))


class DataError(AvfusionError):
    """A dataset, index, manifest or annotation is malformed or incomplete."""


class CheckpointError(AvfusionError):
    """A checkpoint cannot be read, or its keys or shapes do not match the model."""


class ConfigError(AvfusionError):
    """A configuration value or key is invalid."""


class OutputError(AvfusionError):
    """An output (picture, sound, video, report) could not be written; names the file."""


class NonFiniteLossError(AvfusionError):
    """Training produced a NaN or infinite loss."""

    def __init__(self, step: int, value: float):
        self.step = step
        self.value = value
        super().__init__(f"non-finite loss {value} at step {step}; lower the learning rate, check the "
                         "inputs, or allow skipping with train.max_nonfinite_skips")
