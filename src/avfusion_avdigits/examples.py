"""Figures of what the trained models do on the first test scenes (no cherry-picking):
masked reconstruction, localisation heatmaps, separated spectrograms (and WAVs), segmentation masks.

Each function runs a stage's checkpoint on test scenes built with that stage's own data settings and
writes one PNG; captions carry the per-item score where there is one. Localisation, separation and
segmentation go through ``avfusion.Pipeline``, the route every user's video takes (each scene a still
picture with its sound); the masked reconstruction is no inference task, so it calls the AV-MAE model.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avfusion_avdigits.figures import new_figure, save

log = logging.getLogger(__name__)

SPEC_CMAP = "magma"


def _data(stage_result):
    from avfusion.engine import build
    from avfusion.tasks.common import DataConfig

    return build(DataConfig, stage_result.config["data"], "data")


def _batch(dataset, count: int) -> dict[str, Any]:
    from avfusion.data.loading import collate_samples

    return collate_samples([dataset[i] for i in range(min(count, len(dataset)))])


def _spec(ax, spec: np.ndarray, vmin: float, vmax: float, title: str | None = None) -> None:
    ax.imshow(spec, origin="lower", aspect="auto", cmap=SPEC_CMAP, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def _image(ax, image, title: str | None = None) -> None:
    from avfusion.overlays import display_image

    ax.imshow(display_image(image), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


# ----------------------------------------------------------------------------- pretraining
def _unnormalise(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Normalised-pixel predictions back to input units with each target patch's own mean and std
    (the usual MAE visualisation; the model never sees those statistics for masked patches)."""
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
    return pred * (var + 1e-6) ** 0.5 + mean


def reconstruction(path: Path, stage_result, count: int = 4) -> Path:
    """Rows of test scenes: image and spectrogram, each as input, masked input, and reconstruction."""
    from avfusion.checkpoints import load
    from avfusion.models import patchify, unpatchify
    from avfusion.tasks.common import AVDigitsSamples

    model = load(stage_result.checkpoint, expect="pretrain")
    batch = _batch(AVDigitsSamples("test", _data(stage_result)), count)
    image, audio = batch["image"], batch["audio"]
    with torch.no_grad():
        out = model(image, audio, generator=torch.Generator().manual_seed(0))
    p = model.patch_size
    shown = {}
    for name, x, pred, mask, ch in (("image", image, out.pred_image, out.mask_image, 3),
                                    ("audio", audio, out.pred_audio, out.mask_audio, 1)):
        grid = (x.shape[-2] // p, x.shape[-1] // p)
        target = patchify(x, p)
        if model.norm_pix_loss:
            pred = _unnormalise(pred, target)
        m = mask[..., None]
        masked = unpatchify(target * (1 - m), p, grid, ch)  # image: 0 = the ImageNet mean colour (grey)
        recon = unpatchify(target * (1 - m) + pred * m, p, grid, ch)
        shown[name] = (x, masked, recon)
    n = image.shape[0]
    fig = new_figure(13.0, 2.2 * n + 0.6)
    titles = ("image", f"image, {model.image_mask_ratio:.0%} of patches masked", "image reconstruction",
              "log-mel spectrogram", f"spectrogram, {model.audio_mask_ratio:.0%} masked", "spectrogram reconstruction")
    spec_lo, spec_hi = float(audio.min()), float(audio.max())
    for i in range(n):
        for j in range(6):
            ax = fig.add_subplot(n, 6, i * 6 + j + 1)
            title = titles[j] if i == 0 else None
            if j < 3:
                _image(ax, shown["image"][j][i], title)
            else:
                spec = shown["audio"][j - 3][i, 0].numpy()
                if j == 4:  # masked patches in grey, outside the colour map
                    spec = np.ma.masked_where(_patch_mask(out.mask_audio[i], p, audio.shape[-2:]), spec)
                _spec(ax, spec, spec_lo, spec_hi, title)
    how = ("predicted patches are shown with each true patch's mean and spread (the model predicts normalised "
           "patches)" if model.norm_pix_loss else "predicted patches are shown as the model outputs them")
    return save(fig, path, "Masked reconstruction on test scenes (masked patches: grey in the image, blank in the "
                           f"spectrogram).\nReconstructions keep the visible patches; {how}")


def _patch_mask(mask: torch.Tensor, p: int, size) -> np.ndarray:
    """(L,) patch mask -> (H, W) bool, True on removed patches."""
    grid = (size[0] // p, size[1] // p)
    return mask.reshape(grid).repeat_interleave(p, 0).repeat_interleave(p, 1).numpy() > 0.5


# ----------------------------------------------------------------------------- localisation
def _pipeline(stage_result, data):
    """The stage's checkpoint as any user runs it: ``avfusion.Pipeline``, one window of the scene's length."""
    from avfusion.inference import Pipeline

    return Pipeline.from_pretrained(stage_result.checkpoint, window=data.window)


def localization(directory: Path, stage_result, count: int = 12) -> list[Path]:
    """Heatmaps of each read-out over test scenes, each scene run through ``Pipeline.localize`` as a still
    picture with its sound: true box green, silent digits white, cIoU in the caption."""
    from avfusion.metrics.localization import ciou
    from avfusion.overlays import save_heatmap_overlays
    from avfusion.tasks.annotated import AnnotatedAVDigits, boxes_mask
    from avfusion.tasks.localize import to_pixels

    data = _data(stage_result)
    pipeline = _pipeline(stage_result, data)
    dataset = AnnotatedAVDigits("test", data)
    batch = _batch(dataset, count)
    maps: dict[str, list[np.ndarray]] = {}
    for j in range(len(batch["label"])):
        scene = dataset.scenes[j]
        result = pipeline.localize((scene["image"], scene["audio"], data.sample_rate),
                                   blocks=stage_result.config["localize"]["attention_blocks"])
        for readout, grid in {result.readout: result.heatmaps, **result.other}.items():
            maps.setdefault(readout, []).append(grid[0])
    written = []
    for readout in sorted(maps, key=("contrastive", "attention").index):
        grid_maps = torch.from_numpy(np.stack(maps[readout]))
        pixels = to_pixels(grid_maps, data.image_size)
        captions, others = [], []
        for j in range(len(pixels)):
            k, sounding = int(batch["num_digits"][j]), batch["box"][j].numpy()
            gt = boxes_mask(sounding, data.image_size).astype(np.float64)
            captions.append(f"says {int(batch['label'][j])}, cIoU {ciou(pixels[j], gt, 'fixed@0.5'):.2f}")
            boxes = batch["boxes"][j, :k].numpy()
            others.append(np.array([b for b in boxes if not np.array_equal(b, sounding)]).reshape(-1, 4))
        what = ("contrastive head (trained without labels)" if readout == "contrastive"
                else "fusion attention (training-free)")
        written.append(save_heatmap_overlays(
            directory / f"localization_{readout}.png", list(batch["image"]), list(grid_maps.numpy()),
            boxes=list(batch["box"].numpy()), other_boxes=others, captions=captions, columns=6,
            title=f"Localisation, {what}: heatmap over test scenes; green = box of the speaking digit, "
                  "white = silent digits; cIoU with fixed@0.5"))
    return written


# ----------------------------------------------------------------------------- separation
def separation(directory: Path, stage_result, count: int = 3) -> list[Path]:
    """Per test mixture: its two scenes side by side with the summed voices, run through
    ``Pipeline.separate`` with each half as a region; per source the image that guides, the mixture, the
    true and the separated spectrograms; WAVs of mixture, truth and estimate in ``audio/``."""
    import soundfile

    from avfusion.audio import log_mel_spectrogram
    from avfusion.metrics.separation import bss_eval
    from avfusion.tasks.separate_data import AVDigitsMixtureSamples

    data = _data(stage_result)
    pipeline = _pipeline(stage_result, data)
    items = AVDigitsMixtureSamples("test", data, size=count, waveforms=True)
    fig = new_figure(10.0, 2.0 * 2 * count + 0.6)
    audio_dir = directory / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for i in range(len(items)):
        item, scene = items[i], items.scenes[i]
        k, side = scene["image"].shape[0], scene["image"].shape[2]
        labels = [int(v) for v in scene["label"]]
        picture = np.concatenate(list(scene["image"]), axis=1)  # the scenes side by side
        regions = [(s * side, 0, (s + 1) * side, scene["image"].shape[1]) for s in range(k)]
        result = pipeline.separate((picture, item["mixture_waveform"].numpy(), data.sample_rate), regions=regions)
        estimates = torch.from_numpy(result.sources[:, :item["mixture_waveform"].shape[-1]])
        sdr = bss_eval(item["source_waveform"].numpy(), estimates.numpy())[0]
        est_mel = log_mel_spectrogram(estimates, data.sample_rate, data.n_mels, data.window)
        lo, hi = float(item["audio"].min()), float(item["audio"].max())
        path = audio_dir / f"mixture{i}.wav"
        soundfile.write(path, item["mixture_waveform"].numpy(), data.sample_rate)
        written.append(path)
        for s in range(k):
            row = 2 * i + s
            panels = [("image", item["image"][s]), ("mixture", item["audio"][0]), ("true", item["source_audio"][s, 0]),
                      ("separated", est_mel[s])]
            for j, (kind, value) in enumerate(panels):
                ax = fig.add_subplot(2 * count, 4, row * 4 + j + 1)
                title = {"image": f"mixture {i}, source {s}: image (speaks {labels[s]})",
                         "mixture": "mixture (log-mel)", "true": "true source",
                         "separated": f"separated by the image (SDR {sdr[s]:.1f} dB)"}[kind]
                if kind == "image":
                    _image(ax, value, title)
                else:
                    _spec(ax, value.numpy(), lo, hi, title)
            for kind, wave in (("true", item["source_waveform"][s]), ("separated", estimates[s])):
                path = audio_dir / f"mixture{i}_source{s}_{kind}.wav"
                soundfile.write(path, wave.numpy(), data.sample_rate)
                written.append(path)
    written.insert(0, save(fig, directory / "separation.png",
                           "Separation on test mixtures: each image asks for its own digit's voice\n"
                           "(spectrograms: time left to right, mel frequency bottom to top; WAVs in figures/audio)"))
    return written


# ----------------------------------------------------------------------------- segmentation
def segmentation(path: Path, stage_result, count: int = 12) -> Path:
    """Predicted mask (red) and the speaking digit's true strokes (green outline) over test scenes, each
    scene run through ``Pipeline.segment``."""
    from avfusion.metrics.segmentation import foreground_iou
    from avfusion.overlays import save_segmentation_overlays
    from avfusion.tasks.annotated import AnnotatedAVDigits

    data = _data(stage_result)
    pipeline = _pipeline(stage_result, data)
    dataset = AnnotatedAVDigits("test", data)
    batch = _batch(dataset, count)
    probs = np.stack([pipeline.segment((dataset.scenes[j]["image"], dataset.scenes[j]["audio"], data.sample_rate))
                      .probabilities[0] for j in range(len(batch["label"]))])
    masks = batch["mask"].numpy()
    captions = [f"says {int(batch['label'][j])}, IoU {foreground_iou(probs[j] > 0.5, masks[j]):.2f}"
                for j in range(len(probs))]
    return save_segmentation_overlays(path, list(batch["image"]), list(probs), list(masks), captions=captions,
                                      title="Segmentation of the speaking digit on test scenes: prediction (p > 0.5) "
                                            "in red, true strokes outlined in green; foreground IoU")


def all_examples(directory: Path, run) -> list[Path]:
    """Every example figure the run's stages allow."""
    stages = run.stages
    written: list[Path] = []
    if "pretrain" in stages:
        written.append(reconstruction(directory / "reconstruction.png", stages["pretrain"]))
    if "localize" in stages:
        written += localization(directory, stages["localize"])
    if "separate" in stages:
        written += separation(directory, stages["separate"])
    if "segment" in stages:
        written.append(segmentation(directory / "segmentation.png", stages["segment"]))
    return written
