"""Re-encoding one video for fast training reads, in-process with PyAV (no ffmpeg binary needed).

`transcode(src, dst)` writes an MP4: the first video stream scaled so that its short side is at most
`short_side` (never upscaled; aspect kept; even dimensions), H.264 (libx264) with a keyframe every `gop`
frames and no extra scene-cut keyframes, frame timestamps kept as decoded (variable frame rates stay
variable); the first audio stream copied packet for packet when it is AAC, else re-encoded to AAC.
A display rotation is carried over as metadata (the short side is the same either way).

Failures of the input raise DecodeError naming it (no video, no audio, damaged, truncated: a stream that
stops well before the end it declares); failures of the output raise OutputError naming it. The caller
makes the write atomic (`avfusion.data.prepare` writes a temporary file and renames it).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.video.reformatter import Interpolation, VideoReformatter

from avfusion.errors import DecodeError, OutputError

from .container import TRUNCATION_SLACK, declared_end, frame_rotation, video_streams

__all__ = ["TranscodeSettings", "Transcoded", "output_size", "transcode"]

_AAC_LAYOUTS = ("mono", "stereo")


@dataclass(frozen=True)
class TranscodeSettings:
    """What `transcode` writes. The defaults are what the DeepAVFusion recipes read fastest."""
    short_side: int = 360        # target short side in pixels; smaller inputs keep their size
    gop: int = 16                # frames between keyframes (fixed: no scene-cut keyframes)
    crf: int = 23                # x264 constant rate factor (its default quality)
    preset: str = "veryfast"     # x264 speed preset
    threads: int = 1             # decoder, scaler and encoder threads (1: parallelise over files instead)

    def x264_options(self) -> dict[str, str]:
        """The libx264 options, as ffmpeg's command line spells them (``-g 16 -keyint_min 16 ...``)."""
        return {"preset": self.preset, "crf": str(self.crf), "g": str(self.gop), "keyint_min": str(self.gop),
                "sc_threshold": "0"}


@dataclass(frozen=True)
class Transcoded:
    """What was written: output size, frames encoded, how the audio was kept ("copied" or "aac")."""
    width: int
    height: int
    frames: int
    audio: str


def output_size(width: int, height: int, short_side: int = 360) -> tuple[int, int]:
    """(width, height) scaled so the short side is `short_side` when larger (aspect kept, each side the
    nearest even number), else the input size rounded down to even numbers."""
    short = min(width, height)
    if short > short_side:
        scale = short_side / short
        width, height = (2 * round(width * scale / 2), 2 * round(height * scale / 2))
        return max(2, width), max(2, height)
    return max(2, width - width % 2), max(2, height - height % 2)


def _why(exc: Exception) -> str:
    """FFmpeg's message without the file name PyAV appends (the caller names the input itself)."""
    return getattr(exc, "strerror", None) or str(exc)


def _open_input(src, name: str):
    try:
        return av.open(src if isinstance(src, io.IOBase) else str(src), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise DecodeError(name, f"cannot open container (damaged or not a media file): {_why(exc)}") from exc


class _Writer:
    """The output MP4. Its streams are added at the first video frame, whose size and rotation decide
    them; audio that comes before it waits in `pending`."""

    def __init__(self, dst: Path, settings: TranscodeSettings, copy_audio: bool):
        self.dst, self.settings = Path(dst), settings
        try:
            self.container = av.open(str(dst), "w", format="mp4")
        except (av.FFmpegError, OSError) as exc:
            raise OutputError(f"{dst}: cannot be created ({exc})") from exc
        self.video = self.audio = None
        self.copy_audio = copy_audio
        self.size = (0, 0)
        self.frames, self.last_pts, self.next_sample = 0, None, 0
        self.pending: list = []
        self.scaler = VideoReformatter()

    def open_streams(self, frame, vin, ain) -> None:
        s = self.settings
        self.size = output_size(frame.width, frame.height, s.short_side)
        rate = vin.average_rate or vin.guessed_rate or Fraction(30)
        v = self.container.add_stream("libx264", rate=Fraction(rate).limit_denominator(1_000_000))
        v.width, v.height, v.pix_fmt = *self.size, "yuv420p"
        v.time_base = v.codec_context.time_base = vin.time_base
        v.codec_context.thread_count = s.threads
        v.options = s.x264_options()
        if rotation := frame_rotation(frame):
            v.set_display_rotation(rotation)
        self.video = v
        if self.copy_audio:
            self.audio = self.container.add_stream_from_template(ain)
        else:
            ctx = ain.codec_context
            self.audio = self.container.add_stream("aac", rate=ctx.sample_rate)
            self.audio.layout = ctx.layout.name if ctx.layout.name in _AAC_LAYOUTS else "stereo"
        for item in self.pending:
            self.audio_item(item)
        self.pending = []

    def _guard(self, what: str, call, *args):
        try:
            return call(*args)
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise OutputError(f"{self.dst}: {what} failed ({exc})") from exc

    def _send(self, stream, frame) -> None:
        for packet in self._guard("encoding", stream.encode, frame):
            self._guard("writing", self.container.mux, packet)

    def video_frame(self, frame) -> None:
        w, h = self.size
        out = frame
        if frame.width != w or frame.height != h or frame.format.name != "yuv420p":
            out = self.scaler.reformat(frame, width=w, height=h, format="yuv420p",
                                       interpolation=Interpolation.BICUBIC, threads=self.settings.threads)
        pts = frame.pts if frame.pts is not None else (self.last_pts or 0) + 1
        self.last_pts = pts if self.last_pts is None else max(pts, self.last_pts + 1)   # strictly increasing
        out.pts, out.time_base = self.last_pts, frame.time_base
        out.pict_type = av.video.frame.PictureType.NONE          # x264 places the keyframes
        self._send(self.video, out)
        self.frames += 1

    def audio_item(self, item) -> None:
        """An input audio packet (copied) or decoded frame (encoded to AAC, placed by its timestamp)."""
        if self.video is None:
            self.pending.append(item)
        elif self.copy_audio:
            item.stream = self.audio
            self._guard("writing", self.container.mux, item)
        else:
            rate = self.audio.codec_context.sample_rate
            at = round(item.pts * item.time_base * rate) if item.pts is not None else self.next_sample
            item.pts, item.time_base = max(at, self.next_sample), Fraction(1, rate)   # never backwards
            self.next_sample = item.pts + item.samples
            self._send(self.audio, item)

    def finish(self) -> Transcoded:
        self._send(self.video, None)
        if not self.copy_audio:
            self._send(self.audio, None)
        self._guard("closing", self.container.close)
        return Transcoded(*self.size, self.frames, "copied" if self.copy_audio else "aac")

    def abandon(self) -> None:
        try:
            self.container.close()
        except (av.FFmpegError, ValueError, OSError):
            pass                         # the half-written file is deleted by the caller; the first error stands


class _Ends:
    """How far each stream got, in seconds (input timeline), to tell a truncated input."""

    def __init__(self):
        self.video = self.audio = float("-inf")

    def see(self, kind: str, pts, duration, time_base) -> None:
        if pts is not None and time_base is not None:
            end = float((pts + (duration or 0)) * time_base)
            setattr(self, kind, max(getattr(self, kind), end))

    def check(self, inp, vin, ain, name: str) -> None:
        """DecodeError when a stream stops well before the end it declares; a stream that declares none
        is held to the file's end only through the longer of the two (a shorter stream is legitimate)."""
        slack = max(TRUNCATION_SLACK, 2 * _period(vin))
        origin = float((inp.start_time or 0) / av.time_base)
        for kind, stream in (("video", vin), ("audio", ain)):
            got = max(self.video, self.audio) if not stream.duration else getattr(self, kind)
            declared = declared_end(inp, stream) + origin
            if got < declared - slack:
                shown = "nothing" if got == float("-inf") else f"{got:.2f} s"
                raise DecodeError(name, f"{kind} stops at {shown} but the file declares {declared:.2f} s "
                                        "(truncated file?)")


def _period(vin) -> float:
    rate = vin.average_rate or vin.guessed_rate
    return 1.0 / float(rate) if rate else 0.04


def _streams(inp, name: str):
    videos = video_streams(inp)
    if not videos:
        raise DecodeError(name, "no video stream")
    if not inp.streams.audio:
        raise DecodeError(name, "no audio stream")
    return videos[0], inp.streams.audio[0]


def _decoded(packet, name: str, time_base):
    try:
        return packet.decode()
    except (av.FFmpegError, ValueError) as exc:
        at = f" at {float(packet.pts * time_base):.2f} s" if packet.pts is not None and time_base else ""
        raise DecodeError(name, f"decoding failed{at} (damaged file?): {_why(exc)}") from exc


def _demuxed(inp, vin, ain, name: str):
    try:
        yield from inp.demux(vin, ain)
    except (av.FFmpegError, OSError, EOFError) as exc:
        raise DecodeError(name, f"reading failed (damaged or truncated file?): {_why(exc)}") from exc


def transcode(src, dst: str | Path, settings: TranscodeSettings = TranscodeSettings(), *,
              name: str | None = None) -> Transcoded:
    """Write `src` (a path, or a seekable binary file object) as an MP4 at `dst`; see the module docstring.
    `name` is how errors name the input (default: the path)."""
    name = name or str(src)
    inp = _open_input(src, name)
    writer = None
    try:
        vin, ain = _streams(inp, name)
        vin.codec_context.thread_count = settings.threads
        writer, ends = _Writer(Path(dst), settings, copy_audio=ain.codec_context.name == "aac"), _Ends()
        for packet in _demuxed(inp, vin, ain, name):
            if packet.stream is ain:
                ends.see("audio", packet.pts, packet.duration, packet.time_base)
                for item in ([packet] if packet.size else []) if writer.copy_audio else \
                        _decoded(packet, name, ain.time_base):
                    writer.audio_item(item)
                continue
            for frame in _decoded(packet, name, vin.time_base):
                ends.see("video", frame.pts, 0, frame.time_base)
                if writer.video is None:
                    writer.open_streams(frame, vin, ain)
                writer.video_frame(frame)
        if writer.video is None:
            raise DecodeError(name, "video stream holds no decodable frame")
        ends.check(inp, vin, ain, name)
        done = writer.finish()
        writer = None
        return done
    finally:
        if writer is not None:
            writer.abandon()
        inp.close()

