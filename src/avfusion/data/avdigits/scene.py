"""AV-Digits scenes and mixtures, generated deterministically from (split, index, seed).

A scene: 1-3 handwritten digits of distinct classes on a dark canvas, exactly one of them spoken in
the 1 s audio. A mixture: two scenes whose sounding digits differ (and whose images do not show the
other scene's sounding digit), with the sum of their waveforms.

Layouts (``layout``): ``grid`` (default) puts every digit on 2 x 2 cells of 16 pixels, its corner on
the cell grid (the encoder's patches); ``free`` draws sides of about S/4 to S/2.4 at any pixel.

The unimodal pools of the benchmark's first stage (each stream learns its modality alone, the
counterpart of MAE on ImageNet and AudioMAE on AudioSet): :func:`render_glyph` (one digit on a canvas,
no sound) and :func:`render_sound` (one recording in its noisy 1 s window, no image).
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from avfusion.data.avdigits import canvas, sound, sources
from avfusion.errors import DataError

MAX_DIGITS = 3
DEFAULT_IMAGE_SIZE = 96
SPLIT_IDS = {"train": 0, "test": 1}
DEFAULT_LAYOUT = "grid"
_SCENE_STREAM, _MIXTURE_STREAM, _GLYPH_STREAM, _SOUND_STREAM = 0, 1, 2, 3


def _rng_seed(split: str, index: int, seed: int, stream: int) -> np.random.SeedSequence:
    sources.check_split(split)
    if int(index) < 0 or int(seed) < 0:
        raise DataError(f"index and seed must be non-negative integers, got index={index}, seed={seed}")
    return np.random.SeedSequence([int(seed), SPLIT_IDS[split], stream, int(index)])


def _check_size(image_size: int) -> int:
    if int(image_size) < canvas.MIN_IMAGE_SIZE:
        raise DataError(f"image_size {image_size} is too small; use at least {canvas.MIN_IMAGE_SIZE}")
    return int(image_size)


def _compose(rng: np.random.Generator, split: str, image_size: int, layout: str,
             label: int | None = None, exclude: Iterable[int] = (), num_digits: int | None = None,
             with_sound: bool = True) -> dict[str, Any]:
    """Draw and render one scene. ``label`` forces the sounding class; ``exclude`` bans classes;
    ``num_digits`` forces K; ``with_sound=False`` draws no audio (and no audio keys)."""
    img = canvas.background(rng, image_size)
    k = int(rng.integers(1, MAX_DIGITS + 1)) if num_digits is None else int(num_digits)
    if label is None:
        label = int(rng.integers(10))
    banned = {label, *exclude}
    others = [c for c in range(10) if c not in banned]
    classes = [others[int(j)] for j in rng.permutation(len(others))[:k - 1]]
    sounding = int(rng.integers(k))
    classes.insert(sounding, label)

    pixels, _ = sources.digit_images()
    pool = sources.image_pool(split)
    lo, hi = canvas.glyph_sizes(image_size, layout)
    image_ids = [int(pool[c][rng.integers(pool[c].size)]) for c in classes]
    glyphs = [canvas.Glyph(pixels[i], int(rng.integers(lo, hi + 1)) if hi > lo else lo, canvas.bright_colour(rng))
              for i in image_ids]
    corners = canvas.layout(rng, [g.size for g in glyphs], image_size, canvas.layout_step(layout))

    boxes = np.zeros((MAX_DIGITS, 4), dtype=np.int64)
    masks = np.zeros((MAX_DIGITS, image_size, image_size), dtype=bool)
    for j, (glyph, (y, x)) in enumerate(zip(glyphs, corners)):
        boxes[j], stroke = canvas.paint(img, glyph, y, x)
        masks[j, y:y + glyph.size, x:x + glyph.size] = stroke
    image = canvas.finish(rng, img)
    pad = [-1] * (MAX_DIGITS - k)
    scene = {
        "image": image,  # (S, S, 3) uint8
        "label": label,
        "box": boxes[sounding].copy(),  # (4,) x0, y0, x1, y1, exclusive ends
        "mask": masks[sounding].copy(),  # (S, S) bool
        "masks": masks,  # (3, S, S) bool, every digit's stroke mask (all False = no digit)
        "classes": np.array(classes + pad, dtype=np.int64),  # (3,), -1 = no digit
        "boxes": boxes,  # (3, 4), zeros = no digit
        "num_digits": k,
        "sounding": sounding,  # position of the sounding digit in classes/boxes
        "image_ids": np.array(image_ids + pad, dtype=np.int64),  # sklearn digit indices
    }
    if with_sound:
        scene.update(_sound(rng, split, label))
    return scene


def _sound(rng: np.random.Generator, split: str, label: int) -> dict[str, Any]:
    """A random recording of ``label`` from the split's pool in its noisy 1 s window."""
    names = sources.audio_pool(split)[label]
    source = names[int(rng.integers(len(names)))]
    snd = sound.make_sound(rng, sources.load_recording(source))
    return {
        "audio": snd.audio,  # (16000,) float32
        "source": source,  # FSDD recording name
        "offset": snd.offset,
        "snr_db": snd.snr_db,
        "noise": snd.noise,
    }


def render_scene(split: str, index: int, seed: int = 0, image_size: int = DEFAULT_IMAGE_SIZE,
                 layout: str = DEFAULT_LAYOUT) -> dict[str, Any]:
    """Scene ``index`` of ``split``; byte-identical for the same arguments.

    Keys: image (S,S,3) uint8, audio (16000,) float32 at 16 kHz, label, box (4,) and mask (S,S) of
    the sounding digit, classes (3,), boxes (3,4) and stroke masks (3,S,S) of all digits (padded with
    -1 / 0 / False), num_digits,
    sounding, image_ids, source, offset, snr_db, noise. Boxes are (x0, y0, x1, y1) pixels with
    exclusive ends, tight around each digit's stroke mask (upscaled intensity > 0.5).
    """
    size = _check_size(image_size)
    rng = np.random.default_rng(_rng_seed(split, index, seed, _SCENE_STREAM))
    return _compose(rng, split, size, canvas.check_layout(layout))


def render_glyph(split: str, index: int, seed: int = 0, image_size: int = DEFAULT_IMAGE_SIZE,
                 layout: str = DEFAULT_LAYOUT, max_digits: int = 1) -> dict[str, Any]:
    """Image ``index`` of the unimodal image pool of ``split``: handwritten digits on a canvas, no sound.

    One digit (``max_digits`` 1, the default), or 1..``max_digits`` distinct digits drawn uniformly.
    Keys as :func:`render_scene` without the audio ones; ``label`` is one of the digits. Its own random
    stream, so the pool is independent of the audio-visual scenes.
    """
    size = _check_size(image_size)
    if not 1 <= int(max_digits) <= MAX_DIGITS:
        raise DataError(f"max_digits must be in 1..{MAX_DIGITS}, got {max_digits}")
    rng = np.random.default_rng(_rng_seed(split, index, seed, _GLYPH_STREAM))
    k = 1 if int(max_digits) == 1 else int(rng.integers(1, int(max_digits) + 1))
    return _compose(rng, split, size, canvas.check_layout(layout), num_digits=k, with_sound=False)


def render_sound(split: str, index: int, seed: int = 0) -> dict[str, Any]:
    """Sound ``index`` of the unimodal audio pool of ``split``: one spoken digit in its noisy 1 s window,
    no image. Keys: audio (16000,) float32, label, source, offset, snr_db, noise."""
    rng = np.random.default_rng(_rng_seed(split, index, seed, _SOUND_STREAM))
    label = int(rng.integers(10))
    return {"label": label, **_sound(rng, split, label)}


def render_mixture(split: str, index: int, seed: int = 0, image_size: int = DEFAULT_IMAGE_SIZE,
                   layout: str = DEFAULT_LAYOUT) -> dict[str, Any]:
    """Mixture ``index`` of ``split``: two scenes with different sounding digits, stacked.

    Keys: mixture (16000,) float32 = target[0] + target[1]; target (2, 16000), each scene's own
    waveform; and every other scene key stacked on a leading axis of 2 (image (2,S,S,3), label (2,), ...).
    """
    size = _check_size(image_size)
    layout = canvas.check_layout(layout)
    seq = _rng_seed(split, index, seed, _MIXTURE_STREAM)
    labels = [int(c) for c in np.random.default_rng(seq).choice(10, 2, replace=False)]
    seqs = seq.spawn(2)
    scenes = [_compose(np.random.default_rng(seqs[j]), split, size, layout, label=labels[j], exclude=[labels[1 - j]])
              for j in range(2)]
    out = {key: np.stack([np.asarray(s[key]) for s in scenes]) for key in scenes[0] if key != "audio"}
    out["target"] = np.stack([s["audio"] for s in scenes])
    out["mixture"] = out["target"][0] + out["target"][1]
    return out
