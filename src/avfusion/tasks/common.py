"""What every task shares: the ``data:`` and ``model:`` recipe sections, datasets by name, stream init.

Samples are dicts with ``image`` (3, H, W) ImageNet-normalised, ``audio`` (1, n_mels, frames) log-mel,
``index`` (position in the dataset) and ``label``; AV-Digits scenes and real clips
(:class:`avfusion.data.clips.ClipDataset`) look the same to a task.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, make_dataclass
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Dataset

from avfusion.errors import ConfigError
from avfusion.models.encoder import encoder_fields

log = logging.getLogger(__name__)

AVDIGITS = "avdigits"


@dataclass
class DataConfig:
    """The ``data:`` section: which dataset, which splits, and the input shapes.

    Attributes:
        name: "avdigits" (the embedded benchmark) or an index name of ``avfusion.data.indexes``
            (vggsound, audioset, flickr, ..., manifest).
        root: the dataset's root directory (index datasets only).
        index_options: extra keyword arguments of that dataset's index loader.
        lists: {split: id-list file}: restricts each named split to the ids its file lists, in file
            order (first comma or whitespace field of each line; paths relative to ``root``), e.g.
            ``data.lists.test=metadata/vggss_heard_test.csv``. Ids the index lacks are counted and logged.
        train_split: split used for training; several splits joined by "+" are concatenated
            (e.g. "balanced_train+unbalanced_train").
        eval_split: held-out labelled split for evaluation and the pretraining monitor; null: none.
        size: AV-Digits only: number of training scenes (null: the whole split, 6000).
        eval_size: AV-Digits only: number of evaluation scenes (null: the whole split, 1000).
        image_size: square image side in pixels (a multiple of the patch size).
        window: audio window in seconds; the spectrogram has ``window x 64`` frames.
        sample_rate: audio sample rate in Hz.
        n_mels: mel bins of the spectrogram.
        crop_min: smallest area of the training RandomResizedCrop (real clips).
        gain_db: training random gain range +-gain_db dB (real clips).
        frame_mode: which video frame a clip uses (see ClipDataset).
        on_error: what training does with an item that fails to decode: ``raise`` (stop, naming it) or
            ``skip`` (drop it from its batch, never replaced; logged and listed in
            ``OUTPUT/data_errors.jsonl``). Evaluation is always strict.
        max_error_fraction: with ``skip``, the run stops once more than this fraction of an epoch's
            items failed.
        cache: AV-Digits: keep each prepared scene in memory after its first use (sets that draw fresh
            scenes every epoch never cache).
        layout: AV-Digits: where the digits are drawn, ``grid`` (2 x 2 patches, corners on the patch grid)
            or ``free`` (any size and position; version 1 of the benchmark).
        fresh: AV-Digits: training draws a new range of ``size`` scenes every epoch (scenes
            ``epoch * size ...``); false: the same ``size`` scenes every epoch. Evaluation sets are fixed.
    """

    name: str = AVDIGITS
    root: str | None = None
    index_options: dict[str, Any] = field(default_factory=dict)
    lists: dict[str, str] = field(default_factory=dict)
    train_split: str = "train"
    eval_split: str | None = "test"
    size: int | None = None
    eval_size: int | None = None
    image_size: int = 224
    window: float = 3.0
    sample_rate: int = 16000
    n_mels: int = 128
    crop_min: float = 0.5
    gain_db: float = 6.0
    frame_mode: str = "exact"
    on_error: str = "raise"
    max_error_fraction: float = 0.01
    cache: bool = True
    layout: str = "grid"
    fresh: bool = True

    def __post_init__(self) -> None:
        if self.image_size < 1 or self.n_mels < 1 or self.sample_rate < 1 or self.window <= 0:
            raise ConfigError("data.image_size, data.n_mels, data.sample_rate and data.window must be positive")
        if self.layout not in ("grid", "free"):
            raise ConfigError(f"data.layout must be grid or free, got {self.layout!r}")
        if self.name != AVDIGITS and (self.size is not None or self.eval_size is not None):
            raise ConfigError("data.size and data.eval_size apply to avdigits only")

    @property
    def audio_frames(self) -> int:
        """Spectrogram frames of one window: samples // hop (192 for 3 s)."""
        from avfusion.audio import num_frames

        return num_frames(self.window, self.sample_rate)


#: the recipe keys of the encoder: every EncoderConfig field but the input sizes (set by ``data:``)
ENCODER_KEYS = tuple(encoder_fields(inputs=False))

#: The ``model:`` section, its encoder keys derived from EncoderConfig (an encoder option is written once).
ModelConfig = make_dataclass(
    "ModelConfig",
    [("preset", str, field(default="base")),
     *[(name, kind | None, field(default=None)) for name, kind in encoder_fields(inputs=False).items()],
     ("image_init", str | None, field(default=None)),
     ("audio_init", str | None, field(default=None))],
    namespace={"__module__": __name__})
ModelConfig.__doc__ = """The ``model:`` section: an encoder preset plus overrides, and stream initialisation files.

    Input sizes come from the ``data:`` section; every other field of ``avfusion.models.EncoderConfig`` is a
    key here (``ENCODER_KEYS``), and each left null keeps the preset's value (see EncoderConfig for their
    meaning).

    Attributes:
        preset: stream size: tiny, small, base, large or huge.
        image_init: MAE weights ({"model": ...}) for the image stream; null: random init.
        audio_init: AudioMAE weights for the audio stream; null: random init.
    """


def encoder_config_for(model: ModelConfig, data: DataConfig):
    """The EncoderConfig of a recipe: preset, then overrides, then input sizes from the data section."""
    from avfusion.models import encoder_config

    overrides = {k: getattr(model, k) for k in ENCODER_KEYS if getattr(model, k) is not None}
    overrides["image_size"] = (data.image_size, data.image_size)
    overrides["audio_size"] = (data.n_mels, data.audio_frames)
    try:
        return encoder_config(model.preset, **overrides)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model: {exc}") from exc


def stream_init_files(model: ModelConfig) -> tuple[tuple[str, str], ...]:
    """(stream, file) of every stream the recipe initialises from MAE / AudioMAE weights."""
    return tuple((stream, path) for stream, path in (("image", model.image_init), ("audio", model.audio_init))
                 if path)


def init_streams(encoder: torch.nn.Module, model: ModelConfig) -> tuple[str, ...]:
    """Load MAE / AudioMAE weights into the streams named in the recipe; returns the streams loaded."""
    from avfusion.checkpoints import load_stream_init

    for stream, path in stream_init_files(model):
        load_stream_init(getattr(encoder, stream), path)
        log.debug("initialised the %s stream from %s", stream, path)
    return tuple(stream for stream, _ in stream_init_files(model))


def ramped_streams(model: ModelConfig) -> tuple[str, ...]:
    """The streams whose lr follows the stream ramp (``ParamHints.pretrained``): those the recipe initialises
    from MAE / AudioMAE files, none when ``model.pretrained`` (downstream recipes) replaces the whole encoder."""
    if getattr(model, "pretrained", None):
        return ()
    return tuple(stream for stream, _ in stream_init_files(model))


# ----------------------------------------------------------------------------- datasets
class PreparedCache:
    """Per-index memo of prepared AV-Digits samples (``data.cache``); disabled, it prepares every time."""

    def __init__(self, enabled: bool):
        self._items: dict[int, dict[str, Any]] | None = {} if enabled else None

    def get(self, index: int, prepare: Any) -> dict[str, Any]:
        """``prepare(index)``'s result, computed once per index when enabled."""
        if self._items is None:
            return prepare(index)
        if index not in self._items:
            self._items[index] = prepare(index)
        return self._items[index]


class AVDigitsTaskSet(Dataset):
    """What the AV-Digits task sets share: their source (an ``avfusion.data.avdigits`` dataset of the
    split, size, seed, image size and layout of the recipe), the prepared-sample cache, and, for a
    training set with ``data.fresh``, a new range of scenes every epoch (:meth:`set_epoch`)."""

    source: str = "AVDigits"  # the avfusion.data.avdigits dataset class the items come from

    def __init__(self, split: str, data: DataConfig, seed: int = 0, size: int | None = None, train: bool = False,
                 **source_options: Any):
        """``source_options``: extra keyword arguments of the source dataset (e.g. ``max_digits``)."""
        from avfusion.data import avdigits

        if data.sample_rate != avdigits.SAMPLE_RATE:
            raise ConfigError(f"AV-Digits audio is at {avdigits.SAMPLE_RATE} Hz; set data.sample_rate="
                              f"{avdigits.SAMPLE_RATE}")
        self.scenes = getattr(avdigits, self.source)(split, size=size, seed=seed, image_size=data.image_size,
                                                     cache=False, layout=data.layout, **source_options)
        self.data = data
        self.fresh = bool(train and data.fresh)
        self._cache = PreparedCache(data.cache and not self.fresh)

    def __len__(self) -> int:
        return len(self.scenes)

    def set_epoch(self, epoch: int) -> None:
        """Fresh sets: item ``i`` of epoch ``e`` is scene ``e * len + i`` (no scene is seen twice)."""
        if self.fresh:
            self.scenes.set_start(int(epoch) * len(self.scenes))


class AVDigitsSamples(AVDigitsTaskSet):
    """AV-Digits scenes as task samples (no augmentation: the scenes are random already)."""

    def _prepare(self, i: int) -> dict[str, Any]:
        from avfusion.audio import log_mel_spectrogram

        scene = self.scenes[i]
        image = torch.from_numpy(scene["image"]).permute(2, 0, 1).contiguous()  # (3, S, S) uint8
        audio = log_mel_spectrogram(torch.from_numpy(scene["audio"]), self.data.sample_rate,
                                    self.data.n_mels, self.data.window)[None]  # (1, n_mels, frames)
        return {"image": image, "audio": audio, "label": int(scene["label"])}

    def __getitem__(self, index: int) -> dict[str, Any]:
        from avfusion.transforms import normalize_uint8

        i = int(index)
        item = self._cache.get(i, self._prepare)
        image = normalize_uint8(item["image"])
        return {"image": image, "audio": item["audio"].clone(), "label": item["label"], "index": i}


class EpochSamples(Dataset):
    """Sets ``index`` (the position in this set) and ``epoch`` in every sample; ``set_epoch`` is
    forwarded to the wrapped set (e.g. a ClipDataset's augmentation)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def item_id(self, index: int) -> str:
        return self.dataset.item_id(index) if hasattr(self.dataset, "item_id") else str(index)

    def __getitem__(self, index: int) -> Any:
        item = dict(self.dataset[index])
        item["index"], item["epoch"] = int(index), self.epoch
        return item


class ConcatSamples(ConcatDataset):
    """Several splits one after the other; ``set_epoch`` reaches every part."""

    def set_epoch(self, epoch: int) -> None:
        for part in self.datasets:
            if hasattr(part, "set_epoch"):
                part.set_epoch(epoch)


def open_data_index(data: DataConfig):
    """The index the ``data:`` section names: ``data.name`` at ``data.root`` with its options and lists."""
    from avfusion.data.indexes import available, open_index

    if data.name not in available():
        raise ConfigError(f"data.name {data.name!r} is not a dataset; use {AVDIGITS} or one of {available()}")
    if not data.root:
        raise ConfigError(f"data.root is required for {data.name}: pass data.root=/path/to/{data.name}")
    return open_index(data.name, data.root, lists=data.lists, **data.index_options)


def build_dataset(data: DataConfig, split: str, *, train: bool, seed: int = 0) -> Dataset:
    """The samples of ``split`` (or of "a+b" splits, concatenated) of the dataset ``data`` names."""
    if "+" in split:
        return ConcatSamples([build_dataset(data, part, train=train, seed=seed) for part in split.split("+")])
    if data.name == AVDIGITS:
        size = data.size if split == data.train_split else data.eval_size
        return AVDigitsSamples(split, data, seed=seed, size=size, train=train)
    from avfusion.data.clips import ClipDataset

    index = open_data_index(data)
    return ClipDataset(index, split, train=train, window=data.window, image_size=(data.image_size, data.image_size),
                       sample_rate=data.sample_rate, n_mels=data.n_mels, seed=seed, frame_mode=data.frame_mode,
                       crop_min=data.crop_min, gain_db=data.gain_db)
