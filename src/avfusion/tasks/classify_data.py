"""What classification needs from a dataset: its class count, class frequencies, dense clip windows."""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch.utils.data import Dataset

from avfusion.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def _parts(dataset: Any) -> list[Any]:
    """The datasets under wrappers (``.dataset``: EpochSamples, Subset) and concatenations (``.datasets``)."""
    while hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    if hasattr(dataset, "datasets"):
        return [p for part in dataset.datasets for p in _parts(part)]
    return [dataset]


def dataset_num_classes(dataset: Dataset) -> int:
    """Number of classes of a clip dataset (its index's vocabulary)."""
    base = _parts(dataset)[0]
    count = getattr(base, "num_classes", None)
    if count is None and hasattr(base, "maker"):  # ClipDataset: the index's vocabulary
        count = len(base.maker.classes) or None
    if not count:
        raise ConfigError(f"cannot tell the number of classes of {type(base).__name__}; set model.num_classes")
    return int(count)


def dataset_class_names(dataset: Dataset) -> list[str] | None:
    """The class names of a clip dataset (its index's vocabulary), or None where it has none."""
    base = _parts(dataset)[0]
    classes = getattr(getattr(base, "maker", None), "classes", None)
    return [str(c) for c in classes] if classes else None


def class_frequency(dataset: Dataset, num_classes: int, multi_label: bool) -> torch.Tensor:
    """(C,) the official class distribution: occurrences of each class over all label occurrences
    (for single-label data, the fraction of items of each class).

    Read from the index labels when the dataset lists its items (no decoding), else from the samples.
    """
    parts = _parts(dataset)
    listed = [getattr(p, "items", None) for p in parts]
    if all(items is not None and all(hasattr(it, "labels") for it in items) for items in listed):
        labels = [tuple(it.labels) for items in listed for it in items]  # from the index, no decoding
    else:
        log.info("class frequencies: reading the labels of %d samples", len(dataset))
        labels = []
        for i in range(len(dataset)):
            y = torch.as_tensor(dataset[i]["label"])
            labels.append(tuple(torch.nonzero(y).flatten().tolist()) if multi_label else (int(y),))
    if not labels:
        raise DataError("class frequencies of an empty training set")
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for ys in labels:
        for y in set(ys):
            if not 0 <= y < num_classes:
                raise DataError(f"label {y} outside [0, {num_classes})")
            counts[y] += 1
    return (counts / counts.sum()).float()


def frequency_bias(frequency: torch.Tensor) -> torch.Tensor:
    """The official head-bias initialisation log((f + 1e-3) / (1 - f + 1e-3))."""
    return torch.log((frequency + 1e-3) / (1.0 - frequency + 1e-3))


def dataset_multi_label(dataset: Dataset) -> bool | None:
    """Whether a clip dataset's labels are multi-hot; None when the dataset does not say."""
    makers = [getattr(p, "maker", None) for p in _parts(dataset)]
    return None if any(m is None for m in makers) else any(m.multilabel for m in makers)


def dense_eval_dataset(data: Any, split: str, windows: int, seed: int = 0) -> Dataset:
    """Clips of ``split`` as ``windows`` windows each (image (W, 3, H, W'), audio (W, 1, M, T)) spread over
    the central 10 s: the official dense clip evaluation (logits averaged per clip)."""
    from avfusion.tasks.common import AVDIGITS, open_data_index

    if "+" in split:
        from avfusion.tasks.common import ConcatSamples

        return ConcatSamples([dense_eval_dataset(data, part, windows, seed) for part in split.split("+")])
    if data.name == AVDIGITS:
        raise ConfigError("classify.dense_windows applies to clip datasets; an AV-Digits scene is one 1 s "
                          "window: set classify.dense_windows=0")
    from avfusion.data.clips import ClipDataset

    index = open_data_index(data)
    return ClipDataset(index, split, train=False, window=data.window, image_size=(data.image_size, data.image_size),
                       sample_rate=data.sample_rate, n_mels=data.n_mels, seed=seed, frame_mode=data.frame_mode,
                       dense_windows=windows)
