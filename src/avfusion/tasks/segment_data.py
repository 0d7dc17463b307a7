"""AVSBench (S4, MS3, AVSS) as segmentation samples: annotated frames, their masks, audio windows.

Frame k of a clip with n frames shows slot k of the audio track (one second each in AVSBench); its
audio window of ``data.window`` seconds is centred on the slot (``avfusion.data.sampling.slot_window``;
training: on a uniform time inside the slot).

- Training (``AVSBenchFrames(train=True)``): one sample per clip per epoch, a random annotated frame
  (S4 training clips have only their first frame annotated), random resized crop + flip applied to
  frame and mask together; randomness from (seed, epoch, clip index).
- Evaluation (``train=False``): one sample per clip holding every annotated frame, (T, ...) tensors,
  resized (shorter side to ``image_size``) and centre-cropped as the official evaluation does.

Targets: binary tasks (``num_classes == 1``) float {0, 1} (any non-zero mask value is foreground);
semantic (AVSS) int64 class indices as stored in ``labels_semantic``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from avfusion.tasks.common import DataConfig


def resize_crop_geometry(height: int, width: int, size: int):
    """Shorter side to ``size``, centre crop ``size`` x ``size`` (the official segmentation evaluation)."""
    from avfusion.transforms import Geometry

    if height <= width:
        rh, rw = size, int(size * width / height)
    else:
        rh, rw = int(size * height / width), size
    top, left = (rh - size) // 2, (rw - size) // 2
    return Geometry((rh, rw), (top, left, size, size), (size, size), False)


class AVSBenchFrames(Dataset):
    """Split ``split`` of an AVSBench index as training frames or evaluation clips."""

    def __init__(self, index, split: str, data: DataConfig, *, train: bool, num_classes: int, seed: int = 0):
        self.items = [it for it in index[split] if any(m is not None for m in it.masks)]
        self.dropped = len(index[split]) - len(self.items)  # clips without any annotated frame
        self.data = data
        self.train = train
        self.num_classes = num_classes
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def _target(self, mask: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(mask)
        return (t > 0).float() if self.num_classes == 1 else t.long()

    def _frame(self, item, k: int, clip, rng: np.random.Generator | None, generator=None) -> dict[str, Any]:
        """Image, audio and target of annotated frame ``k``."""
        from avfusion.audio import log_mel_spectrogram, random_gain
        from avfusion.media import read_image, read_mask
        from avfusion.data.sampling import slot_window
        from avfusion.transforms import (apply_geometry, apply_geometry_mask, normalize, to_float_tensor,
                                         train_transform_joint)

        d = self.data
        window = slot_window(0.0, clip.duration, d.window, k, len(item.frames), rng)
        wave = torch.from_numpy(clip.audio(window.start, window.end, d.sample_rate))
        if generator is not None and d.gain_db > 0:
            wave = random_gain(wave, generator, -d.gain_db, d.gain_db)
        audio = log_mel_spectrogram(wave, d.sample_rate, d.n_mels, d.window)[None]
        frame = to_float_tensor(read_image(item.frames[k]))
        mask = read_mask(item.masks[k])
        if generator is not None:
            image, _, target = train_transform_joint(frame, mask=torch.from_numpy(mask), size=d.image_size,
                                                     generator=generator, crop_min=d.crop_min)
        else:
            geo = resize_crop_geometry(*frame.shape[-2:], d.image_size)
            image, target = normalize(apply_geometry(frame, geo)), apply_geometry_mask(torch.from_numpy(mask), geo)
        return {"image": image, "audio": audio, "target": self._target(target.numpy())}

    def __getitem__(self, index: int) -> dict[str, Any]:
        from avfusion.media import open_clip
        from avfusion.data.sampling import Stream, choose_frame, numpy_rng, torch_generator

        i = int(index)
        item = self.items[i]
        annotated = [m is not None for m in item.masks]
        with open_clip(item.audio or item.media[0]) as clip:
            if self.train:
                rng = numpy_rng(self.seed, self.epoch, i, Stream.WINDOW)
                k = choose_frame(len(item.frames), annotated, rng)
                sample = self._frame(item, k, clip, rng, torch_generator(self.seed, self.epoch, i, Stream.IMAGE))
                return {**sample, "index": i, "frame": k}
            frames = [self._frame(item, k, clip, None) for k in range(len(item.frames)) if annotated[k]]
        video = {key: torch.stack([f[key] for f in frames]) for key in ("image", "audio", "target")}
        return {**video, "index": i, "frames": [k for k in range(len(item.frames)) if annotated[k]]}
