"""Pictures and videos of inference results: heatmap and mask overlays, spectrograms, MP4 writing.

Pure numpy drawing plus matplotlib's Agg canvas (never pyplot), and PyAV for video: every frame of
the input comes from the package's decoder (``avfusion.media.every_frame``: rotation applied, each
frame's own time, so a variable frame rate is kept), is drawn on, and encoded as H.264 in an MP4 with
AAC audio: the input's own audio (its frames placed by ``avfusion.media.audio_frames``)
re-encoded, or a given waveform (a separated source).
"""
from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from avfusion.errors import OutputError

log = logging.getLogger(__name__)

HEAT_ALPHA = 0.5
MASK_RGB = np.array([255, 40, 40], np.float64)
BOX_RGB = (0, 255, 0)
_VIDEO_TB = Fraction(1, 90000)
_PROGRESS_FRAMES = 300    # videos longer than this many frames show a progress bar (on a terminal)
_AAC_LAYOUTS = ("mono", "stereo", "3.0", "4.0", "5.0", "5.1", "7.1")


# ----------------------------------------------------------------------------- drawing (numpy)
def colorize(values: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) float RGB in [0, 255] through a matplotlib colormap."""
    from matplotlib import colormaps

    lut = (colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0)
    return lut[np.clip(np.nan_to_num(values) * 255.0, 0, 255).astype(np.uint8)]


def blend_heatmap(frame: np.ndarray, heatmap: np.ndarray, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """Heatmap (H, W) over a frame (H, W, 3) uint8, min-max normalised; NaN (not seen) left as is."""
    seen = ~np.isnan(heatmap)
    out = frame.astype(np.float64)
    if seen.any():
        lo, hi = np.nanmin(heatmap), np.nanmax(heatmap)
        norm = (heatmap - lo) / (hi - lo) if hi > lo else np.ones_like(heatmap)
        out[seen] = (1.0 - alpha) * out[seen] + alpha * colorize(norm)[seen]
    return out.round().astype(np.uint8)


def blend_mask(frame: np.ndarray, mask: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Tint the pixels of `mask` (H, W) bool red and outline it in white."""
    out = frame.astype(np.float64)
    out[mask] = (1.0 - alpha) * out[mask] + alpha * MASK_RGB
    edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    out[edge] = 255.0
    return out.round().astype(np.uint8)


def draw_box(frame: np.ndarray, box: Sequence[float], colour=BOX_RGB, width: int | None = None) -> np.ndarray:
    """A rectangle (x0, y0, x1, y1) drawn inside its pixel bounds, on a copy."""
    out = frame.copy()
    h, w = out.shape[:2]
    width = width or max(1, round(min(h, w) / 120))
    x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x1, y1 = min(w, int(round(box[2]))), min(h, int(round(box[3])))
    for sl in ((slice(y0, y0 + width), slice(x0, x1)), (slice(y1 - width, y1), slice(x0, x1)),
               (slice(y0, y1), slice(x0, x0 + width)), (slice(y0, y1), slice(x1 - width, x1))):
        out[sl] = colour
    return out


def draw_marker(frame: np.ndarray, x: float, y: float, colour=(255, 255, 255)) -> np.ndarray:
    """A cross centred on (x, y) with a dark outline, on a copy."""
    out = frame.copy()
    h, w = out.shape[:2]
    r = max(3, round(min(h, w) / 30))
    t = max(1, r // 4)
    cx, cy = int(np.clip(x, 0, w - 1)), int(np.clip(y, 0, h - 1))
    for pad, col in ((t, (0, 0, 0)), (0, colour)):
        out[max(0, cy - t - pad + 1):cy + t + pad, max(0, cx - r - pad):cx + r + pad + 1] = col
        out[max(0, cy - r - pad):cy + r + pad + 1, max(0, cx - t - pad + 1):cx + t + pad] = col
    return out


# ----------------------------------------------------------------------------- pictures (PNG)
def save_png(path: str | Path, image: np.ndarray) -> Path:
    """(H, W, 3) or (H, W) uint8 -> PNG."""
    from matplotlib.image import imsave

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(path, image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, format="png")
    return path


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_sheet(path: str | Path, images: Sequence[np.ndarray], captions: Sequence[str], title: str,
               columns: int = 6, panel: float = 2.4, limit: int = 24) -> Path:
    """Up to `limit` images (evenly chosen) in a grid with captions: an overview of many windows."""
    pick = np.unique(np.linspace(0, len(images) - 1, min(limit, len(images))).round().astype(int))
    cols = min(columns, len(pick))
    rows = -(-len(pick) // cols)
    aspect = images[0].shape[0] / images[0].shape[1]
    fig = _figure(panel * cols, panel * aspect * rows + 0.5)
    for n, i in enumerate(pick):
        ax = fig.add_subplot(rows, cols, n + 1)
        ax.imshow(images[i], interpolation="bilinear")
        ax.set_title(captions[i], fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(Path(path), format="png")
    return Path(path)


def save_regions(path: str | Path, frame: np.ndarray, boxes: Sequence[Sequence[float]], title: str) -> Path:
    """The frame with each box outlined and numbered (boxes in the frame's pixels)."""
    from matplotlib.patches import Rectangle

    h, w = frame.shape[:2]
    fig = _figure(min(10.0, 1.0 + 4.0 * w / h), 4.4)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(frame, interpolation="bilinear")
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="lime", linewidth=2))
        ax.text(x0 + 3, y0 + 3, f"source {k}", color="black", fontsize=9, va="top",
                bbox={"facecolor": "lime", "edgecolor": "none", "pad": 1.5})
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(Path(path), format="png")
    return Path(path)


def save_spectrograms(path: str | Path, waves: dict[str, np.ndarray], sample_rate: int, n_mels: int = 128) -> Path:
    """One log-mel panel per waveform (the model's front end), on a shared colour scale."""
    import torch

    from avfusion.audio import log_mel_spectrogram

    mels = {}
    for name, wave in waves.items():
        x = torch.from_numpy(np.ascontiguousarray(wave, np.float32))
        mels[name] = log_mel_spectrogram(x, sample_rate, n_mels, duration=max(len(wave), 1) / sample_rate).numpy()
    top = max(m.max() for m in mels.values())
    seconds = len(next(iter(waves.values()))) / sample_rate
    fig = _figure(min(14.0, 4.0 + 1.5 * seconds), 1.6 * len(mels) + 0.4)
    for n, (name, mel) in enumerate(mels.items()):
        ax = fig.add_subplot(len(mels), 1, n + 1)
        img = ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=top - 6.0, vmax=top,
                        extent=(0.0, seconds, 0, n_mels), interpolation="nearest")
        ax.set_ylabel("mel bin", fontsize=8)
        ax.set_title(name, fontsize=9, loc="left")
        if n == len(mels) - 1:
            ax.set_xlabel("time (s)", fontsize=8)
        fig.colorbar(img, ax=ax, pad=0.01, label="log10 power")
    fig.tight_layout()
    fig.savefig(Path(path), format="png")
    return Path(path)


def save_wav(path: str | Path, wave: np.ndarray, sample_rate: int) -> Path:
    import soundfile as sf

    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak > 1.0:
        log.info("%s: peak %.2f > 1; scaled down to avoid clipping", path, peak)
        wave = wave / peak
    sf.write(str(path), np.asarray(wave, np.float32), sample_rate, subtype="PCM_16")
    return Path(path)


# ----------------------------------------------------------------------------- video
class _Output:
    """An MP4 being written; its encoder and muxer failures become OutputError naming it."""

    def __init__(self, path: str | Path):
        import av

        self.path = Path(path)
        try:
            self.container = av.open(str(path), "w", format="mp4")
        except (av.FFmpegError, OSError) as exc:
            raise OutputError(f"{path}: cannot be created ({exc})") from exc

    def send(self, stream, frame) -> None:
        """Encode `frame` (None: flush) and mux what comes out."""
        import av

        try:
            for packet in stream.encode(frame):
                self.container.mux(packet)
        except (av.FFmpegError, ValueError) as exc:
            raise OutputError(f"{self.path}: encoding failed ({exc})") from exc

    def close(self) -> None:
        self.container.close()


def write_video(src: str | Path, dst: str | Path, draw: Callable[[np.ndarray, float], np.ndarray],
                audio: str | tuple[np.ndarray, int] | None = "original", crf: int = 20) -> Path:
    """Re-encode `src` as an MP4 with draw(frame (H, W, 3) uint8, t seconds) applied to every frame.

    audio: "original" (the input's audio, re-encoded as AAC; nothing if it has none), a (waveform,
    sample_rate) pair (mono), or None. Odd frame sizes are padded by one pixel (H.264 4:2:0 needs even).
    Input failures raise DecodeError naming `src`, output failures OutputError naming `dst`.
    """
    import av

    from avfusion.media import every_frame, probe
    from avfusion.media.container import open_input, video_streams

    from tqdm.auto import tqdm

    info = probe(src)
    width, height = info.width + info.width % 2, info.height + info.height % 2
    long = (info.num_frames or info.duration * (info.fps or 30)) > _PROGRESS_FRAMES
    out = _Output(dst)
    bar = tqdm(total=info.num_frames, unit="frame", desc=f"writing {Path(dst).name}", leave=False,
               disable=None if long else True)                             # a bar on terminals, for long videos
    try:
        with open_input(src) as inp:
            vin = video_streams(inp)[0]  # the same stream probe() measured (cover art is not video)
            rate = vin.average_rate or vin.guessed_rate or Fraction(30)
            vout = out.container.add_stream("libx264", rate=Fraction(rate).limit_denominator(100000))
            vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
            vout.time_base = vout.codec_context.time_base = _VIDEO_TB
            vout.options = {"crf": str(crf), "preset": "veryfast"}
            aout = _audio_stream(out.container, inp, audio)
            last = -1
            for frame, t in every_frame(inp, src):  # the decoder of avfusion.media: its times and rotation
                rgb = draw(frame, t)
                if rgb.shape[:2] != (height, width):
                    rgb = np.pad(rgb, ((0, height - rgb.shape[0]), (0, width - rgb.shape[1]), (0, 0)), mode="edge")
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                last = max(last + 1, int(round(max(t, 0.0) / _VIDEO_TB)))   # strictly increasing
                vf.pts, vf.time_base = last, _VIDEO_TB
                out.send(vout, vf)
                bar.update()
            out.send(vout, None)
        if aout is not None:
            _encode_audio(out, aout, src, audio)
    finally:
        bar.close()
        out.close()
    return Path(dst)


def _audio_stream(out, inp, audio):
    if audio is None:
        return None
    if isinstance(audio, str):
        if audio != "original":
            raise ValueError(f"audio must be 'original', (waveform, rate) or None, got {audio!r}")
        if not inp.streams.audio:
            return None
        ctx = inp.streams.audio[0].codec_context
        stream = out.add_stream("aac", rate=ctx.sample_rate)
        stream.layout = ctx.layout.name if ctx.layout.name in _AAC_LAYOUTS else "stereo"
        return stream
    stream = out.add_stream("aac", rate=int(audio[1]))
    stream.layout = "mono"
    return stream


def _encode_audio(out: _Output, stream, src, audio) -> None:
    import av

    from avfusion.media import audio_frames
    from avfusion.media.container import open_input

    rate = stream.codec_context.sample_rate
    tb = Fraction(1, rate)
    if isinstance(audio, str):
        with open_input(src) as inp:
            expected = 0
            for frame, at in audio_frames(inp, src):                    # placed as avfusion.media reads it
                frame.pts, frame.time_base = max(at, expected), tb       # never backwards (codec priming)
                expected = frame.pts + frame.samples
                out.send(stream, frame)
    else:
        wave = np.clip(np.asarray(audio[0], np.float32), -1.0, 1.0)
        for s in range(0, len(wave), 1024):
            frame = av.AudioFrame.from_ndarray(wave[None, s:s + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, s, tb
            out.send(stream, frame)
    out.send(stream, None)
