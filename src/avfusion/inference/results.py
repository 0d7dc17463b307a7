"""What `Pipeline` returns: plain dataclasses of numpy arrays, with `to_dict()` for JSON.

Times are seconds from the start of the input. Pixel coordinates are those of the input's frames as
displayed (rotation applied): x to the right, y down, a pixel spans [i, i + 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from avfusion.data.sampling import Window


@dataclass
class Windows:
    """The windows a result covers: audio [start, end), image = the frame shown at `frame_time`."""

    start: np.ndarray        # (N,)
    end: np.ndarray          # (N,)
    frame_time: np.ndarray   # (N,)

    @classmethod
    def of(cls, windows: list[Window]) -> "Windows":
        return cls(*(np.array([getattr(w, k) for w in windows], np.float64) for k in ("start", "end", "frame")))

    def __len__(self) -> int:
        return len(self.start)

    def nearest(self, t: float) -> int:
        """Index of the window whose frame time is closest to t."""
        return int(np.argmin(np.abs(self.frame_time - t)))

    def to_list(self) -> list[dict]:
        return [{"start": round(float(a), 4), "end": round(float(b), 4), "frame_time": round(float(f), 4)}
                for a, b, f in zip(self.start, self.end, self.frame_time)]


@dataclass
class Input:
    """The input a result came from."""

    name: str
    duration: float
    width: int
    height: int
    fps: float | None
    has_audio: bool
    audio_substituted: bool = False   # embed only: silence stood in for a missing audio stream

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Region:
    """Where in the frame a spatial map lies: the model saw `box` (x0, y0, x1, y1) of a frame of `frame`
    (height, width) pixels, resized to its input."""

    box: tuple[float, float, float, float]
    frame: tuple[int, int]

    def place(self, grid_map: np.ndarray, size: tuple[int, int] | None = None, fill: float = np.nan) -> np.ndarray:
        """A (rows, cols) map -> (H, W) over the frame shown at `size` (default: its own size): bilinear
        with half-pixel centres inside the region, `fill` outside it."""
        import torch
        import torch.nn.functional as F

        h, w = size or self.frame
        sy, sx = h / self.frame[0], w / self.frame[1]
        x0, y0, x1, y1 = self.box
        r0, r1 = int(round(y0 * sy)), int(round(y1 * sy))
        c0, c1 = int(round(x0 * sx)), int(round(x1 * sx))
        out = np.full((h, w), fill, np.float64)
        t = torch.as_tensor(np.asarray(grid_map, np.float64))[None, None]
        inner = F.interpolate(t, size=(max(1, r1 - r0), max(1, c1 - c0)), mode="bilinear", align_corners=False)
        out[r0:r1, c0:c1] = inner[0, 0].numpy()[:h - r0, :w - c0]
        return out

    def cell_centre(self, row: int, col: int, grid: tuple[int, int]) -> tuple[float, float]:
        """(x, y) frame coordinates of the centre of grid cell (row, col)."""
        x0, y0, x1, y1 = self.box
        return x0 + (col + 0.5) * (x1 - x0) / grid[1], y0 + (row + 0.5) * (y1 - y0) / grid[0]


@dataclass
class ClassifyResult:
    input: Input
    windows: Windows
    labels: list[str]
    scores: np.ndarray          # (N, C) per window: softmax, or sigmoid when multi-label
    clip_scores: np.ndarray     # (C,) of the mean window logits
    multi_label: bool
    top_k: int

    def top(self, scores: np.ndarray) -> list[dict]:
        order = np.argsort(-scores, kind="stable")[:self.top_k]
        return [{"label": self.labels[i], "index": int(i), "score": round(float(scores[i]), 6)} for i in order]

    def to_dict(self) -> dict:
        return {"input": self.input.to_dict(), "multi_label": self.multi_label,
                "clip": self.top(self.clip_scores),
                "windows": [{**w, "top": self.top(s)} for w, s in zip(self.windows.to_list(), self.scores)]}


@dataclass
class LocalizeResult:
    input: Input
    windows: Windows
    readout: str                 # "contrastive" or "attention"
    heatmaps: np.ndarray         # (N, rows, cols) on the model's image-token grid
    region: Region               # where that grid lies in the frame
    peaks: np.ndarray            # (N, 2) (x, y) frame pixels: centre of each heatmap's highest cell
    frames: np.ndarray           # (N, h, w, 3) uint8 window frames, downscaled for pictures
    other: dict[str, np.ndarray] = field(default_factory=dict)   # the model's other read-outs

    def heatmap(self, k: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """Window k's heatmap over the frame (default: input size), NaN where the model did not look."""
        return self.region.place(self.heatmaps[k], size)

    def to_dict(self) -> dict:
        return {"input": self.input.to_dict(), "readout": self.readout,
                "model_view": [round(v, 2) for v in self.region.box],
                "windows": [{**w, "peak": [round(float(x), 1), round(float(y), 1)],
                             "peak_value": float(h.max())}
                            for w, (x, y), h in zip(self.windows.to_list(), self.peaks, self.heatmaps)]}


@dataclass
class SegmentResult:
    input: Input
    windows: Windows
    probabilities: np.ndarray    # (N, h, w) foreground probability at the model's resolution
    classes: np.ndarray | None   # (N, h, w) arg-max class (multi-class segmenters; 0 = background)
    region: Region
    frames: np.ndarray           # (N, h', w', 3) uint8 window frames, downscaled for pictures

    def mask(self, k: int, threshold: float = 0.5, size: tuple[int, int] | None = None) -> np.ndarray:
        """Window k's foreground mask over the frame (default: input size); False outside the model's view."""
        prob = self.region.place(self.probabilities[k], size)
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(prob, nan=-np.inf) > threshold

    def to_dict(self, threshold: float = 0.5) -> dict:
        return {"input": self.input.to_dict(), "model_view": [round(v, 2) for v in self.region.box],
                "windows": [{**w, "foreground_fraction": round(float((p > threshold).mean()), 4)}
                            for w, p in zip(self.windows.to_list(), self.probabilities)]}


@dataclass
class SeparateResult:
    input: Input
    windows: Windows
    sample_rate: int
    regions: np.ndarray          # (K, 4) boxes (x0, y0, x1, y1) in frame pixels, one per source
    mixture: np.ndarray          # (T,) the mono input at sample_rate
    sources: np.ndarray          # (K, T) what each region sounds like
    residual: np.ndarray         # (T,) what no region claims
    frames: np.ndarray           # (N, h, w, 3) uint8 window frames, downscaled for pictures

    def to_dict(self) -> dict:
        def rms(x):
            return round(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))), 6)
        return {"input": self.input.to_dict(), "sample_rate": self.sample_rate, "windows": self.windows.to_list(),
                "mixture_rms": rms(self.mixture), "residual_rms": rms(self.residual),
                "sources": [{"region": [round(float(v), 1) for v in box], "rms": rms(s)}
                            for box, s in zip(self.regions, self.sources)]}


@dataclass
class EmbedResult:
    input: Input
    windows: Windows
    image: np.ndarray            # (N, D) mean of the final image tokens
    audio: np.ndarray            # (N, D) mean of the final audio tokens
    fusion: np.ndarray           # (N, D) mean of the final fusion tokens

    def to_dict(self) -> dict:
        return {"input": self.input.to_dict(), "windows": self.windows.to_list(), "dim": int(self.image.shape[1])}
