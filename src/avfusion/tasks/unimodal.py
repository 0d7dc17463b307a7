"""Unimodal initialisation: one stream trained on its own modality, saved for ``model.image_init`` /
``model.audio_init``.

DeepAVFusion's streams start from MAE on ImageNet (image) and AudioMAE on AudioSet (audio): each
stream knows its modality before it meets the other. This task is that stage for AV-Digits: the
image stream on handwritten digits alone (one glyph on a canvas, no sound), or the audio stream on
the spoken recordings alone (no image), each from its own training pool, supervised on the digit
(``unimodal.objective: supervised``) or by masked reconstruction of its own patches (``mae``).

Its final directory holds ``stream.pth``: ``{"model": <stream weights>}`` in the official MAE key
layout, the file ``model.image_init`` / ``model.audio_init`` read (heads and decoders are not in it).

    avfusion train unimodal configs/avdigits/unimodal_image.yaml --output runs/image_stream
    avfusion pretrain configs/avdigits/pretrain_tiny.yaml model.image_init=runs/image_stream/final/stream.pth \\
        model.audio_init=runs/audio_stream/final/stream.pth --output runs/avmae
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from avfusion.engine import Task, TrainConfig, unwrap
from avfusion.errors import ConfigError, DataError
from avfusion.randomness import Stream, sample_noise
from avfusion.tasks.common import (AVDIGITS, AVDigitsTaskSet, DataConfig, EpochSamples, ModelConfig,
                                   encoder_config_for)
from avfusion.tasks.evaluation import EvaluationReport

log = logging.getLogger(__name__)

STREAM_FILE = "stream.pth"
MODALITIES = ("image", "audio")


@dataclass
class UnimodalConfig:
    """``unimodal:``: which stream, how it learns.

    Attributes:
        modality: "image" (glyphs alone) or "audio" (recordings alone).
        objective: "supervised" (cross-entropy on the digit, linear head on the pooled tokens, or on
            every token with ``pool: patch``) or "mae" (masked reconstruction of the stream's own patches).
        num_classes: classes of the supervised head.
        label_smoothing: supervised: target smoothing.
        pool: supervised: how the head reads the stream's tokens: "max" or "mean" pooling (one class
            per input; max is far faster to learn where the object covers few tokens), or "patch"
            (image only: every token classifies the digit whose box holds the token's patch centre,
            or background; what the dense audio-visual tasks need, see docs/avdigits.md).
        max_digits: image: digits per training and test canvas, 1..max_digits drawn uniformly
            (1: one glyph per canvas). With more than one, ``pool: patch`` is the objective that
            knows which digit is where.
        mask_ratio: mae: share of the patches removed.
        decoder_embed_dim, decoder_depth, decoder_num_heads: mae: the decoder (discarded afterwards).
        norm_pix_loss: mae: per-patch normalised targets.
    """

    modality: Literal["image", "audio"] = "image"
    objective: Literal["supervised", "mae"] = "supervised"
    num_classes: int = 10
    label_smoothing: float = 0.0
    pool: Literal["max", "mean", "patch"] = "max"
    max_digits: int = 1
    mask_ratio: float = 0.75
    decoder_embed_dim: int = 128
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    norm_pix_loss: bool = False

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ConfigError(f"unimodal.modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.objective not in ("supervised", "mae"):
            raise ConfigError(f"unimodal.objective must be supervised or mae, got {self.objective!r}")
        if self.pool not in ("max", "mean", "patch"):
            raise ConfigError(f"unimodal.pool must be max, mean or patch, got {self.pool!r}")
        if self.pool == "patch" and self.modality != "image":
            raise ConfigError("unimodal.pool=patch needs the digits' boxes: it trains the image stream only")
        if not 1 <= self.max_digits <= 3:
            raise ConfigError(f"unimodal.max_digits must be in 1..3, got {self.max_digits}")


@dataclass
class UnimodalRecipe:
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    unimodal: UnimodalConfig = field(default_factory=UnimodalConfig)


class UnimodalSamples(AVDigitsTaskSet):
    """The unimodal pool of one modality: ``input`` (the normalised image or the log-mel) and ``label``;
    images also carry ``boxes`` (3, 4) and ``classes`` (3,) of their digits (-1: no digit)."""

    def __init__(self, modality: str, split: str, data: DataConfig, seed: int = 0, size: int | None = None,
                 train: bool = False, max_digits: int = 1):
        self.source = "AVDigitsGlyphs" if modality == "image" else "AVDigitsSounds"
        self.modality = modality
        options = {"max_digits": max_digits} if modality == "image" else {}
        super().__init__(split, data, seed, size, train, **options)

    def _prepare(self, i: int) -> dict[str, Any]:
        from avfusion.audio import log_mel_spectrogram

        item = self.scenes[i]
        if self.modality == "image":
            x = torch.from_numpy(item["image"]).permute(2, 0, 1).contiguous()  # (3, S, S) uint8
            return {"input": x, "label": int(item["label"]), "boxes": torch.as_tensor(item["boxes"]),
                    "classes": torch.as_tensor(item["classes"])}
        x = log_mel_spectrogram(torch.from_numpy(item["audio"]), self.data.sample_rate, self.data.n_mels,
                                self.data.window)[None]  # (1, n_mels, frames)
        return {"input": x, "label": int(item["label"])}

    def __getitem__(self, index: int) -> dict[str, Any]:
        from avfusion.transforms import normalize_uint8

        item = self._cache.get(int(index), self._prepare)
        if self.modality == "image":
            return {"input": normalize_uint8(item["input"]), "label": item["label"], "boxes": item["boxes"].clone(),
                    "classes": item["classes"].clone(), "index": int(index)}
        return {"input": item["input"].clone(), "label": item["label"], "index": int(index)}


class UnimodalTask(Task):
    """One stream alone through the engine, built from its recipe; ``save_final`` writes its ``stream.pth``."""

    cfg: UnimodalRecipe

    def _samples(self, split: str, train: bool) -> Dataset:
        cfg = self.cfg
        if cfg.data.name != AVDIGITS:
            raise ConfigError("the unimodal task trains on the AV-Digits pools (data.name: avdigits); for real "
                              "data, start the streams from MAE / AudioMAE files with model.image_init / "
                              "model.audio_init")
        size = cfg.data.size if train else cfg.data.eval_size
        return EpochSamples(UnimodalSamples(cfg.unimodal.modality, split, cfg.data, cfg.train.seed, size, train,
                                            cfg.unimodal.max_digits))

    def train_dataset(self) -> Dataset:
        return self._samples(self.cfg.data.train_split, train=True)

    def eval_dataset(self) -> Dataset | None:
        split = self.cfg.data.eval_split
        return None if split is None else self._samples(split, train=False)

    def build_model(self) -> nn.Module:
        from avfusion.models import EarlyFusionEncoder
        from avfusion.models.unimodal import StreamClassifier, StreamMAE

        cfg = self.cfg
        u = cfg.unimodal
        # the stream exactly as the encoder builds it, so that its weights load into the encoder's
        stream = getattr(EarlyFusionEncoder(encoder_config_for(cfg.model, cfg.data)), u.modality)
        if u.objective == "supervised":
            return StreamClassifier(stream, u.num_classes, u.label_smoothing, u.pool)
        return StreamMAE(stream, u.mask_ratio, u.decoder_embed_dim, u.decoder_depth, u.decoder_num_heads,
                         u.norm_pix_loss)

    def batch_size(self, batch: dict) -> int:
        return int(batch["input"].shape[0])

    def _noise(self, batch: dict, model: nn.Module) -> torch.Tensor | None:
        if self.cfg.unimodal.objective != "mae":
            return None
        stream = Stream.MASK_IMAGE if self.cfg.unimodal.modality == "image" else Stream.MASK_AUDIO
        length = unwrap(model).stream.num_patches
        return sample_noise(self.cfg.train.seed, batch.get("epoch", 0), batch["index"], length, stream)

    def _targets(self, batch: dict, model: nn.Module) -> torch.Tensor:
        """What the supervised head is trained on: the label, or with ``pool: patch`` each token's class."""
        if self.cfg.unimodal.pool != "patch":
            return batch["label"]
        stream = unwrap(model).stream
        return patch_targets(batch["boxes"], batch["classes"], stream.grid_size, stream.patch_embed.patch_size,
                             self.cfg.unimodal.num_classes)

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = batch["input"]
        noise = self._noise(batch, model)
        out = model(x, self._targets(batch, model).to(x.device), None if noise is None else noise.to(x.device))
        return out.loss, {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any) -> EvaluationReport:
        """A new report. Supervised: top-1 of the head (``pool: patch``: the share of digit tokens whose
        class is right, ``patch_top1``, and with one digit a canvas also the input-level top-1); mae: the
        masked reconstruction loss (mean over items)."""
        from avfusion.metrics import Accumulator, summarize_single_label

        model = unwrap(model)
        device = next(model.parameters()).device
        u = self.cfg.unimodal
        acc = Accumulator("unimodal")
        for batch in loader:
            x = batch["input"].to(device)
            if u.objective == "supervised":
                out = model(x)
                logits = out.logits.float().cpu().numpy()
                if u.pool == "patch":  # per item: (digit tokens right, digit tokens)
                    target = self._targets(batch, model)
                    right = (out.token_logits.argmax(-1).cpu() == target) & (target < u.num_classes)
                    counts = zip(right.sum(1).tolist(), (target < u.num_classes).sum(1).tolist())
                else:
                    counts = [None] * len(logits)
                acc.extend(batch["index"].tolist(),
                           [(row, int(y), c) for row, y, c in zip(logits, batch["label"], counts)])
            else:
                # one masking per item (epoch 0 of the evaluation set): per-item losses
                noise = self._noise({**batch, "epoch": 0}, model).to(device)
                losses = [float(model(x[j:j + 1], None, noise[j:j + 1]).loss) for j in range(x.shape[0])]
                acc.extend(batch["index"].tolist(), losses)
        items = acc.gather()
        if not items:
            raise DataError("unimodal evaluation saw no items; check data.eval_split and data.eval_size")
        report = EvaluationReport("unimodal", dataset=self.cfg.data.name, split=self.cfg.data.eval_split,
                                  modality=u.modality, objective=u.objective)
        if u.objective == "supervised":
            if u.pool == "patch":
                right, total = (sum(v[2][j] for v in items.values()) for j in (0, 1))
                report.add(u.modality, "patch_top1", "digit tokens (patch centre in a digit's box)",
                           right / max(total, 1), total)
            if u.max_digits == 1:
                summary = summarize_single_label(np.stack([v[0] for v in items.values()]),
                                                 np.array([v[1] for v in items.values()]))
                report.add(u.modality, "top1", summary["protocol"], summary["top1"], summary["N"])
        else:
            report.add(u.modality, "mae_loss", "masked_mse" + ("/norm_pix" if u.norm_pix_loss else ""),
                       float(np.mean(list(items.values()))), len(items))
        return report

    def save_final(self, model: nn.Module, directory: Path) -> None:
        """``directory/stream.pth``: {"model": the stream's weights}, written atomically."""
        from avfusion.checkpoints.io import atomic_torch_save

        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).stream.state_dict().items()}
        atomic_torch_save({"model": state}, directory / STREAM_FILE)
        log.info("%s stream written to %s", self.cfg.unimodal.modality, directory / STREAM_FILE)


def patch_targets(boxes: torch.Tensor, classes: torch.Tensor, grid: tuple[int, int], patch_size: int,
                  background: int) -> torch.Tensor:
    """(B, K, 4) pixel boxes (x0, y0, x1, y1, exclusive ends) and (B, K) classes (-1: no digit) ->
    (B, rows * cols) the class of the box that holds each patch's centre, else ``background``."""
    rows, cols = grid
    centre = torch.arange(max(rows, cols)) * patch_size + patch_size // 2
    cy = centre[:rows, None].expand(rows, cols).flatten()
    cx = centre[None, :cols].expand(rows, cols).flatten()
    b = boxes.float()
    inside = ((b[..., 0, None] <= cx) & (cx < b[..., 2, None]) & (b[..., 1, None] <= cy) & (cy < b[..., 3, None])
              & (classes[..., None] >= 0))  # (B, K, N)
    out = torch.full((boxes.shape[0], rows * cols), background, dtype=torch.long)
    for k in range(boxes.shape[1]):
        out = torch.where(inside[:, k], classes[:, k, None].long(), out)
    return out


TASK_CLASS = UnimodalTask
RECIPE_CLASS = UnimodalRecipe
