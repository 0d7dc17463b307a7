"""Torch datasets of audio-visual samples read from an index: `ClipDataset` and `MixtureDataset`.

A sample is one frame and the log-mel spectrogram of a window of audio (docs/model.md: inputs, audio front end).
Training draws the window (temporal jitter), the crop, the flip and the gain from generators seeded by
(seed, epoch, index) (`avfusion.data.sampling`), so it does not depend on workers or processes;
`set_epoch` changes them. Evaluation is centred and deterministic. Nothing is ever replaced: an
unreadable item raises `DecodeError` naming the item and its file. Whether that stops the run or the
item is skipped and counted is decided once, by the loader (`avfusion.data.loading.make_loader`:
`on_error` for training, always strict for evaluation), which turns the error into a `FailedItem`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from avfusion.audio import log_mel_spectrogram, random_gain
from avfusion.data.indexes import Index, Item
from avfusion.data.item_media import View, read_view
from avfusion.data.sampling import Stream, numpy_rng, torch_generator
from avfusion.errors import ConfigError, DataError, DecodeError
from avfusion.transforms import (Geometry, apply_geometry, apply_geometry_boxes, apply_geometry_mask,
                                 normalize, normalize_uint8, random_resized_crop_params)
from avfusion.transforms import eval_geometry as square_eval_geometry

log = logging.getLogger(__name__)

__all__ = ["ClipDataset", "FailedItem", "SampleMaker"]

_FRAME_MODES = ("exact", "keyframe")


@dataclass(frozen=True)
class FailedItem:
    """What the loader puts in a batch instead of a sample that failed to decode (training with
    `on_error="skip"`): counted, listed and dropped, never replaced."""

    index: int
    id: str
    path: str
    reason: str
    where: str | None = None      # the sample that needed the file, when the dataset said


def eval_geometry(h: int, w: int, out: tuple[int, int]) -> Geometry:
    """Resize to cover out * 256/224 (shorter side 256 for a 224 square), centre crop `out`."""
    if out[0] == out[1]:
        return square_eval_geometry(h, w, out[0])
    th, tw = int(256 * out[0] / 224), int(256 * out[1] / 224)
    scale = max(th / h, tw / w)
    rh, rw = max(th, int(h * scale)), max(tw, int(w * scale))
    top, left = int(round((rh - out[0]) / 2.0)), int(round((rw - out[1]) / 2.0))
    return Geometry((rh, rw), (top, left, *out), tuple(out), False)


def train_geometry(h: int, w: int, out: tuple[int, int], gen: torch.Generator, crop_min: float) -> Geometry:
    """Random resized crop (scale (crop_min, 1), aspect 3/4..4/3) to `out`, flip with p 0.5."""
    crop = random_resized_crop_params(h, w, gen, scale=(crop_min, 1.0))
    flip = bool(torch.rand(1, generator=gen).item() < 0.5)
    return Geometry((h, w), crop, tuple(out), flip)


def transform_frames(frames: np.ndarray, geo: Geometry) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, h, w) float, normalised.

    A crop without a first resize (training's random resized crop) is cut from the uint8 frames and
    resized in uint8, as the official pipeline resizes its PIL images (torch's antialiased bilinear
    uint8 kernel, PIL's filter, rounded to uint8); it then becomes float, flipped and normalised at the
    output size. That is about 4x cheaper than resizing in float and differs from it by the rounding
    to uint8 (at most ~1 grey level); the uint8 result is normalised in one multiply-add. A first
    resize (evaluation) takes the float path."""
    h, w = frames.shape[1:3]
    if geo.resize_to == (h, w):
        top, left, ch, cw = geo.crop
        crop = torch.from_numpy(np.ascontiguousarray(frames[:, top:top + ch, left:left + cw]))
        x = crop.permute(0, 3, 1, 2)                          # channels-last uint8 (N, 3, ch, cw)
        if (ch, cw) != tuple(geo.out):
            x = F.interpolate(x, size=tuple(geo.out), mode="bilinear", align_corners=False, antialias=True)
        if geo.flip:
            x = x.flip(-1)
        return normalize_uint8(x.contiguous())
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    return normalize(apply_geometry(x, geo))


class SampleMaker:
    """Turns an item's raw `View` into tensors: image transform (with boxes and mask) and log-mel."""

    def __init__(self, index: Index, items: Sequence[Item], *, window: float, image_size: tuple[int, int],
                 sample_rate: int, n_mels: int, crop_min: float, gain_db: float):
        self.classes = index.classes
        self.multilabel = bool(index.multilabel) or any(len(it.labels) > 1 for it in items)
        self.window, self.image_size = float(window), (int(image_size[0]), int(image_size[1]))
        self.sample_rate, self.n_mels = int(sample_rate), int(n_mels)
        self.crop_min, self.gain_db = float(crop_min), float(gain_db)

    def image(self, item: Item, view: View, gen: torch.Generator | None) -> dict[str, torch.Tensor]:
        """`image` (3, H, W) or (N, 3, H, W) for several windows; `boxes`, `box_annotators`, `mask`."""
        h, w = view.frames.shape[1:3]
        geo = (train_geometry(h, w, self.image_size, gen, self.crop_min) if gen is not None
               else eval_geometry(h, w, self.image_size))
        image = transform_frames(view.frames, geo)
        out = {"image": image[0] if len(view.windows) == 1 else image}
        if item.boxes:
            px = torch.tensor(item.boxes, dtype=torch.float64) * torch.tensor([w, h, w, h], dtype=torch.float64)
            out["boxes"] = apply_geometry_boxes(px, geo, (h, w))
            if item.box_annotators:
                out["box_annotators"] = torch.tensor(item.box_annotators, dtype=torch.int64)
        if view.mask is not None:
            if view.mask.shape != (h, w):
                raise DataError(f"item {item.id!r}: mask {view.mask.shape} and frame {(h, w)} differ in size")
            out["mask"] = apply_geometry_mask(view.mask, geo)
        return out

    def log_mel(self, waveform: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """(..., samples) -> (..., 1, n_mels, frames); a random gain first when `gen` is given."""
        if gen is not None and self.gain_db > 0:
            waveform = random_gain(waveform, gen, -self.gain_db, self.gain_db)
        mel = log_mel_spectrogram(waveform, self.sample_rate, self.n_mels, duration=self.window)
        return mel.unsqueeze(-3)

    def label(self, item: Item) -> torch.Tensor | None:
        """int64 scalar (single-label), float multi-hot (num_classes,), or None without classes."""
        if not self.classes:
            return None
        if self.multilabel:
            hot = torch.zeros(len(self.classes), dtype=torch.float32)
            hot[list(item.labels)] = 1.0
            return hot
        if len(item.labels) != 1:
            raise DataError(f"item {item.id!r} has {len(item.labels)} labels in a single-label index")
        return torch.tensor(item.labels[0], dtype=torch.int64)


def check_options(frame_mode: str, window: float) -> None:
    if frame_mode not in _FRAME_MODES:
        raise ConfigError(f"frame_mode must be one of {_FRAME_MODES}, got {frame_mode!r}")
    if not window > 0:
        raise ConfigError(f"window must be positive, got {window}")


class ClipDataset(Dataset):
    """Samples of one split of `index`: a frame and the log-mel of a `window`-second audio window.

    Items: `image` (3, H, W) float32, ImageNet-normalised; `audio` (1, n_mels, frames) float32;
    `index` (int); `id` (str); `label` (int64 scalar, or float multi-hot (num_classes,) for multi-label
    indexes; absent without classes); when the item has them `boxes` (K, 4) in output pixels,
    `box_annotators` (K,) and `mask` (H, W) int64, moved by the same geometry as the image.
    `dense_windows=N` (evaluation only): `image` (N, 3, H, W), `audio` (N, 1, n_mels, frames) for N
    windows over the central 10 s. `frame_mode="keyframe"` is the fast approximation of `exact`.
    """

    def __init__(self, index: Index, split: str, *, train: bool, window: float = 3.0,
                 image_size: tuple[int, int] = (224, 224), sample_rate: int = 16000, n_mels: int = 128,
                 seed: int = 0, frame_mode: str = "exact", crop_min: float = 0.5, gain_db: float = 6.0,
                 dense_windows: int | None = None):
        check_options(frame_mode, window)
        if dense_windows is not None and (train or dense_windows < 1):
            raise ConfigError("dense_windows is an evaluation protocol: use it with train=False and N >= 1")
        self.name, self.split = index.name, split
        self.items = index[split]
        self.train, self.seed, self.epoch = bool(train), int(seed), 0
        self.frame_mode, self.dense_windows = frame_mode, dense_windows
        self.maker = SampleMaker(index, self.items, window=window, image_size=image_size,
                                 sample_rate=sample_rate, n_mels=n_mels, crop_min=crop_min, gain_db=gain_db)
        if self.maker.multilabel and not index.multilabel and index.classes:
            log.info("%s/%s: some items have several labels; labels are multi-hot", index.name, split)

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Select the randomness of `epoch` (training windows, crops, flips, gains)."""
        self.epoch = int(epoch)

    def item_id(self, i: int) -> str:
        return self.items[i].id

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        item = self.items[i]
        try:
            return self._sample(i, item)
        except DecodeError as e:
            raise DecodeError(e.path, e.reason, f"item {item.id!r} of {self.name}/{self.split}") from e

    def _sample(self, i: int, item: Item) -> dict[str, Any]:
        m = self.maker
        rng = numpy_rng(self.seed, self.epoch, i, Stream.WINDOW) if self.train else None
        view = read_view(item, window=m.window, sample_rate=m.sample_rate, frame_mode=self.frame_mode,
                         rng=rng, dense=self.dense_windows)
        image_gen = torch_generator(self.seed, self.epoch, i, Stream.IMAGE) if self.train else None
        audio_gen = torch_generator(self.seed, self.epoch, i, Stream.AUDIO) if self.train else None
        out: dict[str, Any] = {"index": i, "id": item.id, **m.image(item, view, image_gen)}
        audio = m.log_mel(torch.from_numpy(view.audio), audio_gen)           # (N, 1, n_mels, T)
        out["audio"] = audio if self.dense_windows else audio[0]
        label = m.label(item)
        if label is not None:
            out["label"] = label
        return out


from avfusion.data.mixtures import MixtureDataset  # noqa: E402  (re-exported; it builds on SampleMaker)

__all__.append("MixtureDataset")
