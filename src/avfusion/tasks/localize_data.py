"""Sound-localisation test sets with ground-truth maps: Flickr-SoundNet and VGG-SS (docs/protocols.md).

Each item: the annotated frame resized to ``data.image_size`` squared (no crop, as the EZ-VSL
evaluation does, so that the boxes keep their meaning), the audio window of ``data.window`` seconds
centred in the clip, and the ground-truth map at ``gt_size`` (224) by the dataset's rule:
Flickr-SoundNet ``consensus`` (boxes on the 256-pixel frame, summed over annotators, halved, clipped
to 1), VGG-SS ``union`` (binary). Evaluation is strict, as everywhere: an item that fails to decode
raises (``DecodeError`` naming the file), whatever ``data.on_error`` says for training.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from avfusion.errors import ConfigError
from avfusion.tasks.common import DataConfig

log = logging.getLogger(__name__)

#: Test sets and the ground-truth rule each uses.
GT_RULES = {"flickr": "consensus", "vggss": "union"}


def gt_map(item, rule: str, size: int) -> np.ndarray:
    """The ground-truth map of an index item at ``size`` squared, by ``rule``."""
    from avfusion.metrics.localization import gt_from_boxes_consensus, gt_from_boxes_union

    if not item.boxes:
        return np.zeros((size, size))
    if rule == "consensus":
        frame = float(item.extra.get("frame_size", 256.0))
        return gt_from_boxes_consensus(np.asarray(item.boxes) * frame, size=size, orig_size=frame)
    return gt_from_boxes_union(item.boxes, size)


class LocalizationTestSet(Dataset):
    """The test split of ``name`` (flickr or vggss) at ``root`` as evaluation samples."""

    def __init__(self, name: str, root: str, data: DataConfig, gt_size: int = 224,
                 index_options: dict[str, Any] | None = None):
        from avfusion.data.indexes import open_index

        if name not in GT_RULES:
            raise ConfigError(f"localisation test set {name!r} is not one of {sorted(GT_RULES)} (or avdigits)")
        if not root:
            raise ConfigError(f"the {name} test set needs its root directory: set localize.eval_root")
        index = open_index(name, root, **(index_options or {}))
        self.items = index["test"]
        self.notes = dict(index.notes)  # deviations of the annotation file, stated in the evaluation report
        self.without_box = sum(not item.boxes for item in self.items)  # scored cIoU 0 (docs/protocols.md)
        self.rule = GT_RULES[name]
        self.data = data
        self.gt_size = gt_size

    def __len__(self) -> int:
        return len(self.items)

    def _decode(self, item) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 frame and the centred audio window of one item."""
        from avfusion.media import open_clip, read_image
        from avfusion.data.sampling import eval_window

        d = self.data
        with open_clip(item.audio or item.media[0]) as clip:
            window = eval_window(item.start or 0.0, item.end if item.end is not None else clip.duration, d.window)
            wave = clip.audio(window.start, window.end, d.sample_rate)
        if item.frames:
            return read_image(item.frames[0]), wave
        with open_clip(item.media[0]) as clip:
            return clip.frames([window.frame])[0], wave

    def __getitem__(self, index: int) -> dict[str, Any]:
        from avfusion.audio import log_mel_spectrogram
        from avfusion.transforms import normalize, resize, to_float_tensor

        i = int(index)
        item = self.items[i]
        d = self.data
        gt = torch.from_numpy(gt_map(item, self.rule, self.gt_size)).float()
        frame, wave = self._decode(item)  # evaluation never skips: a DecodeError stops it, naming the file
        image = normalize(resize(to_float_tensor(frame), (d.image_size, d.image_size)))
        audio = log_mel_spectrogram(torch.from_numpy(wave), d.sample_rate, d.n_mels, d.window)[None]
        return {"image": image, "audio": audio, "gt": gt, "index": i}
