"""Writing each result to disk as the commands do: JSON, PNG pictures, WAV files and videos.

Every writer builds its whole output in a temporary place first (`avfusion.inference.outputs`), so
an interrupted or failed run leaves no partial output, and refuses targets that are inputs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from avfusion import __version__
from avfusion.inference import render
from avfusion.inference.outputs import MARKER, output_dir, output_file, write_json
from avfusion.inference.results import (ClassifyResult, EmbedResult, LocalizeResult, SegmentResult,
                                        SeparateResult)


def _header(command: str, meta: dict[str, Any] | None) -> dict[str, Any]:
    return {"avfusion": __version__, "command": command, **(meta or {})}


def run_meta(command: str, checkpoint, pipe) -> dict[str, Any]:
    """What an output records of the run that made it: the checkpoint as given, the window, stride and
    fit (the same for `avfusion COMMAND` and `avfusion demo`, so that both write the same files)."""
    from avfusion.inference.methods import INFERENCE

    return {"checkpoint": str(checkpoint), "window": pipe.window, "stride": pipe.stride or pipe.window,
            "fit": pipe.fit or INFERENCE[command].default_fit}


def _caption(result, k: int) -> str:
    w = result.windows
    return f"{w.start[k]:.1f}-{w.end[k]:.1f} s"


def _is_file(result) -> bool:
    return Path(result.input.name).is_file()


def save_classify(result: ClassifyResult, path: str | Path, meta: dict | None = None) -> Path:
    """One JSON file: the whole-clip top-k and every window's."""
    with output_file(path, [result.input.name], suffix=".json") as tmp:
        write_json(tmp, {**_header("classify", meta), **result.to_dict()})
    return Path(path)


def save_localize(result: LocalizeResult, directory: str | Path, meta: dict | None = None,
                  video: bool = True) -> Path:
    """result.json (peaks), heatmaps/NNNN.png per window, heatmaps.png (overview), overlay.mp4."""
    directory = Path(directory)
    with output_dir(directory, [result.input.name]) as tmp:
        pictures = []
        for k, frame in enumerate(result.frames):
            size = frame.shape[:2]
            scale = size[1] / result.input.width
            picture = render.blend_heatmap(frame, result.heatmap(k, size))
            picture = render.draw_marker(picture, result.peaks[k][0] * scale, result.peaks[k][1] * scale)
            render.save_png(tmp / "heatmaps" / f"{k:04d}.png", picture)
            pictures.append(picture)
        render.save_sheet(tmp / "heatmaps.png", pictures, [_caption(result, k) for k in range(len(pictures))],
                          f"{Path(result.input.name).name}: {result.readout} heatmap, + = peak")
        files = {"heatmaps": "heatmaps/NNNN.png (window NNNN)", "overview": "heatmaps.png"}
        if video and _is_file(result):
            cache: dict[int, np.ndarray] = {}

            def draw(frame: np.ndarray, t: float) -> np.ndarray:
                k = result.windows.nearest(t)
                if k not in cache:
                    cache.clear()
                    cache[k] = result.heatmap(k, frame.shape[:2])
                return render.blend_heatmap(frame, cache[k])

            render.write_video(result.input.name, tmp / "overlay.mp4", draw, audio="original")
            files["video"] = "overlay.mp4"
        write_json(tmp / MARKER, {**_header("localize", meta), "files": files, **result.to_dict()})
    return directory


def save_segment(result: SegmentResult, directory: str | Path, meta: dict | None = None, video: bool = True,
                 threshold: float = 0.5) -> Path:
    """result.json, masks/NNNN.png (0/255 at frame size), overlays/NNNN.png, overlays.png, overlay.mp4."""
    directory = Path(directory)
    with output_dir(directory, [result.input.name]) as tmp:
        pictures = []
        for k, frame in enumerate(result.frames):
            render.save_png(tmp / "masks" / f"{k:04d}.png", result.mask(k, threshold).astype(np.uint8) * 255)
            picture = render.blend_mask(frame, result.mask(k, threshold, frame.shape[:2]))
            render.save_png(tmp / "overlays" / f"{k:04d}.png", picture)
            pictures.append(picture)
        render.save_sheet(tmp / "overlays.png", pictures, [_caption(result, k) for k in range(len(pictures))],
                          f"{Path(result.input.name).name}: sounding-object mask (p > {threshold:g})")
        files = {"masks": "masks/NNNN.png", "overlays": "overlays/NNNN.png", "overview": "overlays.png"}
        if video and _is_file(result):
            cache: dict[int, np.ndarray] = {}

            def draw(frame: np.ndarray, t: float) -> np.ndarray:
                k = result.windows.nearest(t)
                if k not in cache:
                    cache.clear()
                    cache[k] = result.mask(k, threshold, frame.shape[:2])
                return render.blend_mask(frame, cache[k])

            render.write_video(result.input.name, tmp / "overlay.mp4", draw, audio="original")
            files["video"] = "overlay.mp4"
        write_json(tmp / MARKER, {**_header("segment", meta), "files": files, **result.to_dict(threshold)})
    return directory


def save_separate(result: SeparateResult, directory: str | Path, meta: dict | None = None, video: bool = True,
                  n_mels: int = 128) -> Path:
    """mixture.wav, source_K.wav, residual.wav, spectrograms.png, regions.png, source_K.mp4, result.json."""
    directory = Path(directory)
    rate = result.sample_rate
    with output_dir(directory, [result.input.name]) as tmp:
        render.save_wav(tmp / "mixture.wav", result.mixture, rate)
        for k, source in enumerate(result.sources):
            render.save_wav(tmp / f"source_{k}.wav", source, rate)
        render.save_wav(tmp / "residual.wav", result.residual, rate)
        waves = {"mixture": result.mixture, **{f"source {k}: region {_box(b)}": s
                                                for k, (b, s) in enumerate(zip(result.regions, result.sources))},
                 "residual": result.residual}
        render.save_spectrograms(tmp / "spectrograms.png", waves, rate, n_mels)
        frame = result.frames[len(result.frames) // 2]
        scale = frame.shape[1] / result.input.width
        render.save_regions(tmp / "regions.png", frame, [[v * scale for v in box] for box in result.regions],
                            f"{Path(result.input.name).name}: the regions separated")
        files = {"mixture": "mixture.wav", "sources": "source_K.wav", "residual": "residual.wav",
                 "spectrograms": "spectrograms.png", "regions": "regions.png"}
        if video and _is_file(result):
            for k, (box, source) in enumerate(zip(result.regions, result.sources)):
                render.write_video(result.input.name, tmp / f"source_{k}.mp4",
                                   lambda f, t, box=box: render.draw_box(f, box), audio=(source, rate))
            files["videos"] = "source_K.mp4 (region K drawn, its sound as the audio)"
        write_json(tmp / MARKER, {**_header("separate", meta), "files": files, **result.to_dict()})
    return directory


def _box(box) -> str:
    return "(" + ", ".join(f"{v:.0f}" for v in box) + ")"


def save_embeddings(results: list[EmbedResult], path: str | Path, meta: dict | None = None) -> Path:
    """One .npz: image, audio, fusion (W, D) over all windows of all inputs, with `video` (W,) the input
    of each row, start/end/frame_time (W,), and per input `videos`, `audio_substituted`."""
    rows = [np.full(len(r.windows), i) for i, r in enumerate(results)]
    arrays = {key: np.concatenate([getattr(r, key) for r in results]).astype(np.float32)
              for key in ("image", "audio", "fusion")}
    arrays.update(video=np.concatenate(rows), videos=np.array([r.input.name for r in results]),
                  audio_substituted=np.array([r.input.audio_substituted for r in results]),
                  start=np.concatenate([r.windows.start for r in results]),
                  end=np.concatenate([r.windows.end for r in results]),
                  frame_time=np.concatenate([r.windows.frame_time for r in results]),
                  meta=np.array(json.dumps(_header("embed", meta))))
    with output_file(path, [r.input.name for r in results], suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return Path(path)
