"""`Pipeline`: a checkpoint applied to a whole video, window by window, in batches.

    pipe = avfusion.Pipeline.from_pretrained("runs/classify/final")
    result = pipe.classify("clip.mp4", top_k=5, labels="labels.txt")
    result.to_dict()                        # JSON-ready; arrays in result.scores, result.windows

Inputs are a path, or arrays: (frames, waveform, sample_rate) with frames (H, W, 3) or (N, H, W, 3)
uint8 and a waveform (samples,) or (channels, samples). Each method needs a checkpoint of its kind
(its record's `needs`, `avfusion.inference.methods.INFERENCE`) and raises CheckpointError otherwise.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from avfusion.audio import FRAMES_PER_SECOND
from avfusion.errors import ConfigError, DataError, DecodeError
from avfusion.inference import loading, views
from avfusion.inference.results import (ClassifyResult, EmbedResult, Input, LocalizeResult, SegmentResult,
                                        SeparateResult, Windows)
from avfusion.inference.methods import INFERENCE
from avfusion.inference.separation import overlap_add, residual_logits
from avfusion.inference.windows import open_media, plan_windows

log = logging.getLogger(__name__)



class Pipeline:
    """Runs one model over media inputs. `window` (seconds, default: the model's audio length) and
    `stride` (default: `window`) plan the windows; `fit` ("crop" | "squash", default per method, see
    `avfusion.inference.views`) chooses how a frame becomes the model's image; `progress` shows a bar
    on a terminal for inputs of more than one batch."""

    def __init__(self, model: nn.Module, *, device: str | torch.device = "cpu", window: float | None = None,
                 stride: float | None = None, batch_size: int = 8, fit: str | None = None,
                 sample_rate: int = 16000, progress: bool = False, name: str = "the model"):
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size}")
        if stride is not None and not stride > 0:
            raise ConfigError(f"stride must be positive, got {stride}")
        if fit is not None and fit not in views.FITS:
            raise ConfigError(f"fit must be one of {views.FITS}, got {fit!r}")
        model = loading.for_inference(model)
        config = loading.encoder_of(model).config
        self.trained_window = config.audio_size[1] / FRAMES_PER_SECOND
        self.window = float(window) if window else self.trained_window
        frames = int(round(self.window * FRAMES_PER_SECOND))
        if abs(frames - self.window * FRAMES_PER_SECOND) > 1e-6:
            raise ConfigError(f"--window {self.window:g} s is not a whole number of spectrogram frames (1/64 s)")
        self.model = loading.with_audio_frames(model, frames).to(device).eval()
        self.device = torch.device(device)
        self.stride, self.batch_size, self.fit = stride, int(batch_size), fit
        self.sample_rate, self.progress, self.name = int(sample_rate), progress, name
        self.image_size = tuple(config.image_size)
        self.n_mels = int(config.audio_size[0])

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, device: str | torch.device = "cpu", *,
                        window: float | None = None, stride: float | None = None, batch_size: int = 8,
                        fit: str | None = None, progress: bool = False, **load_kwargs) -> "Pipeline":
        """A `save_pretrained` directory or an official .pth file; `load_kwargs` go to `load_official`."""
        model = loading.load_model(source, **load_kwargs)
        return cls(model, device=device, window=window, stride=stride, batch_size=batch_size, fit=fit,
                   progress=progress, name=str(source))

    @property
    def task(self) -> str:
        """The kind of model: encoder, classify, separate, segment or localize."""
        return loading.task_of(self.model)

    # ------------------------------------------------------------------ the loop
    def _run(self, source, method: str, step: Callable[..., None], audio_required: bool = True):
        """Decode `source` once; per batch call step(windows, frames (B, H, W, 3) uint8, waveforms (B, T),
        log-mel (B, 1, n_mels, frames) on the device). Returns (Input, windows, whole waveform or None)."""
        from tqdm.auto import tqdm

        from avfusion.audio import log_mel_spectrogram

        with open_media(source, self.sample_rate) as media:
            facts = media.facts
            if media.waveform is None and audio_required:
                raise DecodeError(facts.name, f"has no audio stream, and {method} needs the sound "
                                              "(only `embed` runs without it, on silence)")
            if media.waveform is None:
                log.warning("%s: no audio stream; embedding with silence in its place (flagged in the output)",
                            facts.name)
            windows = plan_windows(facts.duration, self.window, self.stride)
            info = Input(facts.name, facts.duration, facts.width, facts.height, facts.fps, facts.has_audio,
                         audio_substituted=media.waveform is None)
            num = int(round(self.window * self.sample_rate))
            bar = tqdm(total=len(windows), unit="window", desc=f"{method} {Path(facts.name).name}",
                       disable=None if (self.progress and len(windows) > self.batch_size) else True, leave=False)
            with bar, torch.inference_mode():
                for i in range(0, len(windows), self.batch_size):
                    batch = windows[i:i + self.batch_size]
                    frames = media.frames([w.frame for w in batch])
                    wave = (media.window_audio(batch) if media.waveform is not None
                            else np.zeros((len(batch), num), np.float32))
                    mel = log_mel_spectrogram(torch.from_numpy(wave), self.sample_rate, self.n_mels, self.window)
                    step(batch, frames, wave, mel[:, None].to(self.device))
                    bar.update(len(batch))
            return info, windows, media.waveform

    def _view(self, method: str, height: int, width: int):
        return views.model_view(height, width, self.image_size, self.fit or INFERENCE[method].default_fit)

    # ------------------------------------------------------------------ methods
    def classify(self, source, top_k: int = 5, labels: Sequence[str] | str | os.PathLike | None = None,
                 multi_label: bool = False) -> ClassifyResult:
        """Class scores per window and for the whole input (the mean of the window logits).
        `labels`: names, or a file (one per line; a .csv's last column, after its header)."""
        loading.check_supports(self.model, "classify", self.name)
        if labels is not None:
            names = read_labels(labels, self.model.num_classes)
        else:  # the names the classifier was trained with, where its checkpoint carries them
            names = getattr(self.model, "class_names", None) or [f"class {i}" for i in range(self.model.num_classes)]
        logits: list[torch.Tensor] = []

        def step(batch, frames, wave, mel):
            geo, _ = self._view("classify", *frames.shape[1:3])
            logits.append(self.model(views.model_input(frames, geo).to(self.device), mel).logits.float().cpu())

        info, windows, _ = self._run(source, "classify", step)
        z = torch.cat(logits)
        act = torch.sigmoid if multi_label else (lambda x: torch.softmax(x, -1))
        return ClassifyResult(info, Windows.of(windows), names, act(z).numpy(), act(z.mean(0)).numpy(),
                              multi_label, max(1, int(top_k)))

    def localize(self, source, readout: str | None = None, blocks: str | list[int] = "last") -> LocalizeResult:
        """A heatmap per window: the contrastive head's when the checkpoint has one, else the fusion
        attention (`readout` picks one; `blocks` the fusion blocks the attention read-out averages)."""
        from avfusion.models.localization import heatmaps

        loading.check_supports(self.model, "localize", self.name)
        # a contrastive localiser gives both read-outs; any other checkpoint its encoder's attention
        model = self.model if self.task == "localize" else loading.encoder_of(self.model)
        maps: dict[str, list[np.ndarray]] = {}
        previews: list[np.ndarray] = []
        state = {}

        def step(batch, frames, wave, mel):
            geo, state["region"] = self._view("localize", *frames.shape[1:3])
            out = heatmaps(model, views.model_input(frames, geo).to(self.device), mel, blocks)
            for name, value in out.items():
                maps.setdefault(name, []).append(value.float().cpu().numpy())
            previews.append(views.preview(frames))

        info, windows, _ = self._run(source, "localize", step)
        stacked = {name: np.concatenate(v) for name, v in maps.items()}
        chosen = readout or ("contrastive" if "contrastive" in stacked else "attention")
        if chosen not in stacked:
            raise ConfigError(f"read-out {chosen!r} is not available from {self.name}; it offers {sorted(stacked)}")
        hm, region = stacked.pop(chosen), state["region"]
        flat = hm.reshape(len(hm), -1).argmax(1)
        peaks = np.array([region.cell_centre(int(i) // hm.shape[2], int(i) % hm.shape[2], hm.shape[1:])
                          for i in flat])
        return LocalizeResult(info, Windows.of(windows), chosen, hm, region, peaks, np.concatenate(previews), stacked)

    def segment(self, source) -> SegmentResult:
        """The sounding objects' mask per window."""
        loading.check_supports(self.model, "segment", self.name)
        probs: list[np.ndarray] = []
        classes: list[np.ndarray] = []
        previews: list[np.ndarray] = []
        state = {}

        def step(batch, frames, wave, mel):
            geo, state["region"] = self._view("segment", *frames.shape[1:3])
            logits = self.model(views.model_input(frames, geo).to(self.device), mel).logits.float().cpu()
            if logits.shape[1] == 1:
                probs.append(torch.sigmoid(logits[:, 0]).numpy())
            else:
                p = torch.softmax(logits, 1)
                probs.append((1.0 - p[:, 0]).numpy())
                classes.append(p.argmax(1).numpy())
            previews.append(views.preview(frames))

        info, windows, _ = self._run(source, "segment", step)
        return SegmentResult(info, Windows.of(windows), np.concatenate(probs),
                             np.concatenate(classes) if classes else None, state["region"], np.concatenate(previews))

    def separate(self, source, regions: Sequence[Sequence[float]] | None = None) -> SeparateResult:
        """The sound of each image region: points (x, y) or boxes (x0, y0, x1, y1) in frame pixels
        (default: the whole frame); each source is the separator conditioned on its region's crop."""
        from avfusion.audio import mask_to_waveform

        loading.check_supports(self.model, "separate", self.name)
        parts: list[tuple[np.ndarray, np.ndarray]] = []   # per batch: sources (R, B, T), residual (B, T)
        previews: list[np.ndarray] = []
        state = {}

        def step(batch, frames, wave, mel):
            h, w = frames.shape[1:3]
            if "boxes" not in state:
                state["boxes"] = ([views.region_box(r, h, w) for r in regions] if regions
                                  else [self._view("separate", h, w)[1].box])
            boxes = state["boxes"]
            images = torch.cat([views.crop_input(frames, box, self.image_size) for box in boxes]).to(self.device)
            logits = self.model(images, mel.repeat(len(boxes), 1, 1, 1)).mask_logits[:, 0].float().cpu()
            mix = torch.from_numpy(wave)                                       # (B, T)
            r, b = len(boxes), len(batch)
            sources = mask_to_waveform(mix.repeat(r, 1), logits, self.sample_rate, self.n_mels)
            rest = mask_to_waveform(mix, residual_logits(logits.reshape(r, b, *logits.shape[1:])),
                                    self.sample_rate, self.n_mels)
            parts.append((sources.reshape(r, b, -1).numpy(), rest.numpy()))
            previews.append(views.preview(frames))

        info, windows, waveform = self._run(source, "separate", step)
        total = waveform.shape[0]
        starts = [int(round(w.start * self.sample_rate)) for w in windows]
        sources = np.concatenate([p[0] for p in parts], axis=1)                # (R, N, T)
        residual = np.concatenate([p[1] for p in parts])                       # (N, T)
        return SeparateResult(info, Windows.of(windows), self.sample_rate, np.array(state["boxes"], np.float64),
                              waveform.copy(), np.stack([overlap_add(s, starts, total) for s in sources]),
                              overlap_add(residual, starts, total), np.concatenate(previews))

    def embed(self, source) -> EmbedResult:
        """Mean-pooled final image, audio and fusion tokens per window (any checkpoint). Without an audio
        stream the audio is silence, flagged in `result.input.audio_substituted`."""
        encoder = loading.encoder_of(self.model)
        feats: dict[str, list[np.ndarray]] = {"image": [], "audio": [], "fusion": []}

        def step(batch, frames, wave, mel):
            geo, _ = self._view("embed", *frames.shape[1:3])
            out = encoder(views.model_input(frames, geo).to(self.device), mel)
            for key in feats:
                feats[key].append(getattr(out, key).mean(1).float().cpu().numpy())

        info, windows, _ = self._run(source, "embed", step, audio_required=False)
        return EmbedResult(info, Windows.of(windows), *(np.concatenate(feats[k]) for k in ("image", "audio", "fusion")))


def read_labels(labels, num_classes: int) -> list[str]:
    """Class names from a list or a file; their number must equal the model's classes."""
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels)
        if not path.is_file():
            raise ConfigError(f"{path}: no such labels file")
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if path.suffix.lower() == ".csv":
            import csv
            rows = list(csv.reader(lines))[1:]
            lines = [row[-1].strip() for row in rows]
        names, where = lines, str(path)
    else:
        names, where = [str(x) for x in labels], "the labels"
    if len(names) != num_classes:
        raise DataError(f"{where} holds {len(names)} names but the classifier has {num_classes} classes")
    return names
