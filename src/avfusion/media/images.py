"""Still images (jpg, png, ...) and masks, decoded with PyAV: `read_image`, `read_mask`."""
from __future__ import annotations

import numpy as np

from avfusion.errors import DecodeError

from .container import open_input

__all__ = ["read_image", "read_mask"]


def _first_frame(path, convert):
    """`convert(frame)` of an image file's first frame, decoded without seeking: seeking an image2 input
    leaves FFmpeg's demuxer nothing to read for JPEGs as ffmpeg, PIL or OpenCV write them (the
    Flickr-SoundNet, VGG-SS and AVSBench frames)."""
    with open_input(path) as container:
        if not container.streams.video:
            raise DecodeError(path, "no image in the file")
        frame = next(container.decode(container.streams.video[0]), None)
        if frame is None:
            raise DecodeError(path, "image holds no decodable frame")
        return convert(frame)


def read_image(path) -> np.ndarray:
    """A still image (jpg, png, ...) as (H, W, 3) uint8 RGB."""
    return _first_frame(path, lambda frame: frame.to_ndarray(format="rgb24"))


def read_mask(path) -> np.ndarray:
    """A mask image as (H, W) int64 of its stored values: palette indices, grey levels (e.g. 0/255 or
    class indices), or one channel of an RGB image whose channels are equal. Colour masks are refused."""
    return _first_frame(path, lambda frame: _mask_values(path, frame))


def _mask_values(path, frame) -> np.ndarray:
    name = frame.format.name
    if name == "pal8" or name.startswith("gray"):
        arr = frame.to_ndarray()
        arr = arr[0] if isinstance(arr, tuple) else arr           # pal8: (indices, palette)
    else:
        rgb = frame.to_ndarray(format="rgb24")
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise DecodeError(path, f"colour mask ({name}); give palette or grey-level masks "
                                    "(e.g. AVSBench labels_semantic, not labels_rgb)")
        arr = rgb[..., 0]
    return np.ascontiguousarray(arr).astype(np.int64)
