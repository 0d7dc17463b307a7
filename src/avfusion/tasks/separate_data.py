"""Mixture samples for separation, in the format of ``avfusion.data.clips.MixtureDataset``.

A sample is a dict: ``image`` (K, 3, S, S) ImageNet-normalised frames of the K sources, ``audio``
(1, n_mels, frames) log-mel of the mixture, ``source_audio`` (K, 1, n_mels, frames) log-mel of each
source, ``source_waveform`` (K, L) and ``mixture_waveform`` (L,) (AV-Digits: evaluation only), and
``index``. The mixture is the sum of the source waveforms. AV-Digits uses its fixed two-voice
mixtures; clip datasets use ``MixtureDataset`` (random partners for training, a fixed list for
evaluation).
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch.utils.data import Dataset

from avfusion.errors import ConfigError
from avfusion.tasks.common import AVDIGITS, AVDigitsTaskSet, DataConfig, open_data_index

log = logging.getLogger(__name__)


class AVDigitsMixtureSamples(AVDigitsTaskSet):
    """AV-Digits mixtures of ``split`` (two scenes with different sounding digits): fixed for evaluation,
    a fresh range every epoch for training (``data.fresh``)."""

    source = "AVDigitsMixtures"

    def __init__(self, split: str, data: DataConfig, seed: int = 0, size: int | None = None,
                 waveforms: bool = False, train: bool = False):
        super().__init__(split, data, seed, size, train)
        self.waveforms = waveforms

    def _prepare(self, i: int) -> dict[str, Any]:
        from avfusion.audio import log_mel_spectrogram

        item = self.scenes[i]
        sources = torch.from_numpy(item["target"]).float()  # (2, L)
        mixture = sources.sum(0)
        mels = log_mel_spectrogram(torch.cat([mixture[None], sources]), self.data.sample_rate, self.data.n_mels,
                                   self.data.window)  # (3, n_mels, T)
        out = {"image": torch.from_numpy(item["image"]).permute(0, 3, 1, 2).contiguous(),  # (2, 3, S, S) uint8
               "audio": mels[:1], "source_audio": mels[1:, None]}
        if self.waveforms:
            out["source_waveform"], out["mixture_waveform"] = sources, mixture
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        from avfusion.transforms import normalize_uint8

        i = int(index)
        item = self._cache.get(i, self._prepare)
        out = {k: v.clone() for k, v in item.items()}
        out["image"] = normalize_uint8(item["image"])
        out["index"] = i
        return out


def build_mixtures(data: DataConfig, split: str, *, train: bool, seed: int, sep) -> Dataset:
    """Training mixtures, or the fixed evaluation mixtures with waveforms, of ``split``.

    ``sep`` is the ``separate:`` section (num_sources, train_list, eval_index, eval_mixtures).
    """
    if data.name == AVDIGITS:
        if sep.num_sources != 2:
            raise ConfigError("AV-Digits mixtures have 2 sources; set separate.num_sources=2")
        size = data.size if split == data.train_split else data.eval_size
        return AVDigitsMixtureSamples(split, data, seed=seed, size=size, waveforms=not train, train=train)
    if not data.root:
        raise ConfigError(f"data.root is required for {data.name}: pass data.root=/path/to/{data.name}")
    from avfusion.data.clips import MixtureDataset
    from avfusion.data.indexes import open_index, restrict

    if train or not sep.eval_index:
        index = open_data_index(data)
    else:
        index = open_index(sep.eval_index, data.root)
    if train and sep.train_list:  # the official list takes its ids from VGGSound's train and test alike
        index = restrict(index, {split: sep.train_list}, across_splits=True)
    return MixtureDataset(index, split, train=train, num_sources=sep.num_sources, seed=seed, window=data.window,
                          image_size=(data.image_size, data.image_size), sample_rate=data.sample_rate,
                          n_mels=data.n_mels, frame_mode=data.frame_mode, crop_min=data.crop_min,
                          gain_db=data.gain_db, num_mixtures=None if train else sep.eval_mixtures)
