"""Mix-and-separate samples: `MixtureDataset` (imported from `avfusion.data.clips`).

The mixture is the sum of the sources' waveforms (docs/protocols.md, separation). Where the sources come
from, in order of precedence:
1. an index whose items hold several media files (e.g. `vggsound_music`): each item is one fixed mixture;
2. `pairs`: a fixed list of mixtures, each a sequence of item ids or positions in the split;
3. training: mixture i combines item i with `num_sources - 1` random partners drawn per epoch
   (partners share no label with item i when labels allow);
4. evaluation without a list: `sampling.fixed_mixtures(seed)`, the same in every run (logged).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from avfusion.audio import random_gain
from avfusion.data.clips import SampleMaker, check_options
from avfusion.data.indexes import Index, Item
from avfusion.data.item_media import read_view
from avfusion.data.sampling import fixed_mixtures, mixture_sources
from avfusion.randomness import Stream, numpy_rng, source_stream, torch_generator
from avfusion.errors import ConfigError, DecodeError

log = logging.getLogger(__name__)

__all__ = ["MixtureDataset"]


def _split_media(item: Item) -> list[Item]:
    """The sources of an item holding several media files, as single-media items."""
    names = list(item.extra.get("sources", ())) if item.extra else []
    return [replace(item, id=names[k] if k < len(names) else f"{item.id}#{k}", media=(m,), labels=(), boxes=(),
                    box_annotators=()) for k, m in enumerate(item.media)]


class MixtureDataset(Dataset):
    """Mixtures of `num_sources` clips of one split of `index`.

    Items: `image` (S, 3, H, W) one frame per source; `audio` (1, n_mels, frames) log-mel of the
    mixture; `source_audio` (S, 1, n_mels, frames) log-mel of each source (the targets);
    `source_waveform` (S, samples) and `mixture_waveform` (samples,) for re-synthesis and SDR;
    `index`, `id`, `source_ids` (list of S ids) and, when the index has classes, `label` (S,) int64
    or (S, num_classes) multi-hot. Training applies an independent random gain to each source before
    summing; the other keyword arguments are those of `ClipDataset`.
    """

    def __init__(self, index: Index, split: str, *, train: bool, pairs: Sequence[Sequence[int | str]] | None = None,
                 num_sources: int = 2, seed: int = 0, window: float = 3.0,
                 image_size: tuple[int, int] = (224, 224), sample_rate: int = 16000, n_mels: int = 128,
                 frame_mode: str = "exact", crop_min: float = 0.5, gain_db: float = 6.0,
                 distinct_labels: bool = True, num_mixtures: int | None = None):
        check_options(frame_mode, window)
        self.name, self.split = index.name, split
        self.items = index[split]
        self.train, self.seed, self.epoch = bool(train), int(seed), 0
        self.frame_mode = frame_mode
        self.maker = SampleMaker(index, self.items, window=window, image_size=image_size,
                                 sample_rate=sample_rate, n_mels=n_mels, crop_min=crop_min, gain_db=gain_db)
        self._labels = [it.labels for it in self.items] if distinct_labels and index.classes else None
        self.listed = bool(self.items) and all(len(it.media) > 1 for it in self.items)
        self.mixtures: list[tuple[int, ...]] | None = None
        if self.listed:
            sizes = {len(it.media) for it in self.items}
            if len(sizes) != 1:
                raise ConfigError(f"{index.name}/{split}: items mix {sorted(sizes)} sources")
            self.num_sources = sizes.pop()
            self._size = len(self.items)
        else:
            self.num_sources = int(num_sources)
            if pairs is not None:
                self.mixtures = self._resolve(pairs)
            elif not train:
                self.mixtures = fixed_mixtures(len(self.items), self.num_sources, self.seed, num_mixtures,
                                               self._labels)
                log.info("%s/%s: no evaluation list given; using %d fixed mixtures drawn from seed %d",
                         index.name, split, len(self.mixtures), self.seed)
            self._size = len(self.mixtures) if self.mixtures is not None else (num_mixtures or len(self.items))
            if len(self.items) < self.num_sources:
                raise ConfigError(f"{index.name}/{split}: {len(self.items)} items cannot form "
                                  f"mixtures of {self.num_sources}")

    def _resolve(self, pairs: Sequence[Sequence[int | str]]) -> list[tuple[int, ...]]:
        by_id = {it.id: k for k, it in enumerate(self.items)}
        out = []
        for row, mix in enumerate(pairs):
            if len(mix) != self.num_sources:
                raise ConfigError(f"mixture {row} lists {len(mix)} sources, expected {self.num_sources}")
            try:
                out.append(tuple(by_id[s] if isinstance(s, str) else range(len(self.items))[int(s)] for s in mix))
            except (KeyError, IndexError) as e:
                raise ConfigError(f"mixture {row}: source {e} is not in {self.name}/{self.split}") from None
        return out

    def __len__(self) -> int:
        return self._size

    def set_epoch(self, epoch: int) -> None:
        """Select the randomness of `epoch` (partners, windows, crops, gains)."""
        self.epoch = int(epoch)

    def item_id(self, i: int) -> str:
        return self.sources(i)[0]

    def sources(self, i: int) -> tuple[str, list[Item]]:
        """(mixture id, source items) of mixture `i` in the current epoch."""
        if self.listed:
            item = self.items[i]
            return item.id, _split_media(item)
        if self.mixtures is not None:
            chosen = self.mixtures[i]
        else:
            rng = numpy_rng(self.seed, self.epoch, i, Stream.PARTNERS)
            chosen = mixture_sources(i % len(self.items), len(self.items), self.num_sources, rng, self._labels)
        items = [self.items[k] for k in chosen]
        return "+".join(it.id for it in items), items

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        mix_id, items = self.sources(i)
        try:
            return self._sample(i, mix_id, items)
        except DecodeError as e:
            raise DecodeError(e.path, e.reason, f"mixture {mix_id!r} of {self.name}/{self.split}") from e

    def _sample(self, i: int, mix_id: str, items: list[Item]) -> dict[str, Any]:
        m = self.maker
        images, waves, labels = [], [], []
        for k, item in enumerate(items):
            rng = numpy_rng(self.seed, self.epoch, i, source_stream(Stream.WINDOW, k)) if self.train else None
            view = read_view(item, window=m.window, sample_rate=m.sample_rate, frame_mode=self.frame_mode, rng=rng)
            gen = torch_generator(self.seed, self.epoch, i, source_stream(Stream.IMAGE, k)) if self.train else None
            images.append(m.image(replace(item, boxes=(), box_annotators=()), view, gen)["image"])
            wave = torch.from_numpy(view.audio[0])
            if self.train and m.gain_db > 0:
                wave = random_gain(wave, torch_generator(self.seed, self.epoch, i, source_stream(Stream.AUDIO, k)),
                                   -m.gain_db, m.gain_db)
            waves.append(wave)
            labels.append(m.label(item))
        source_waveform = torch.stack(waves)                                  # (S, samples)
        mixture = source_waveform.sum(0)
        out: dict[str, Any] = {
            "index": i, "id": mix_id, "source_ids": [it.id for it in items],
            "image": torch.stack(images),                                     # (S, 3, H, W)
            "audio": m.log_mel(mixture, None),                                # (1, n_mels, T)
            "source_audio": m.log_mel(source_waveform, None),                 # (S, 1, n_mels, T)
            "source_waveform": source_waveform, "mixture_waveform": mixture,
        }
        if all(label is not None for label in labels):
            out["label"] = torch.stack(labels)
        return out
