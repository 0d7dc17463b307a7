"""Audio-visual segmentation: AVSBench S4 / MS3 (binary), AVSS (semantic), and AV-Digits.

Training uses the annotated frames (the official recipe: AdamW, layer decay 0.75, base lr 3e-4).
Evaluation scores every annotated frame (docs/protocols.md): binary tasks under ``avsbench`` (per clip)
and ``official``; AVSS under ``semantic`` (unseen classes skipped, and counted as 0 as AVSBench's
script does) and, on the foreground probability 1 - p(background), ``avsbench`` and ``official``.
AV-Digits (docs/avdigits.md): pixels of the speaking digit, foreground IoU and F (beta^2 0.3) of the
mask prob > 0.5 per image, averaged, beside the ``all_foreground``, ``all_digits`` (every visible digit's box)
and ``all_strokes`` (every visible digit's strokes: no choice of the speaking one) baselines.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from avfusion.engine import ParamHints, Task, TrainConfig, unwrap
from avfusion.errors import ConfigError, DataError
from avfusion.tasks.common import (AVDIGITS, DataConfig, ModelConfig, encoder_config_for, init_streams, open_data_index,
                                   ramped_streams)
from avfusion.tasks.evaluation import EvaluationReport
from avfusion.tasks.weights import encoder_param_hints, load_encoder_init, load_task_model

log = logging.getLogger(__name__)

#: The binary protocol of AV-Digits: prediction = probability > 0.5, per-image scores averaged.
AVDIGITS_PROTOCOL = "avdigits/binary@0.5"


@dataclass
class SegmentModelConfig(ModelConfig):
    """``model:`` of a segmentation recipe.

    Attributes:
        pretrained: encoder weights: a ``save_pretrained`` directory (any task) or an official file.
        num_classes: 1 for binary masks; null: 1, or the index's class count for avsbench_avss (71).
        decoder_min_width: the decoder's narrowest width (official 128; each scale is max(this, D / scale)).
            A smaller floor suits a small encoder: see ``avfusion.models.segmentation.Segmenter``.
    """

    pretrained: str | None = None
    num_classes: int | None = None
    decoder_min_width: int = 128


@dataclass
class SegmentConfig:
    """``segment:``: evaluation options.

    Attributes:
        background: class index of the background (semantic protocol's ``*_fg`` numbers, foreground
            probability of the binary protocols on AVSS).
        semantic_unseen: how the semantic protocol treats classes never present: both are reported
            unless one is named here.
        loss: training loss of binary (one-class) tasks: "bce" (the official mean BCE-with-logits) or
            "bce+dice" (plus ``dice_weight`` x the soft Dice loss 1 - 2|P.G| / (|P| + |G|) per image,
            averaged: it weighs the few foreground pixels as much as the background, which plain BCE
            learns slowly when the foreground covers a few percent of the image, e.g. AV-Digits strokes).
            Multi-class tasks always use cross-entropy.
        dice_weight: weight of the Dice term of "bce+dice".
    """

    background: int = 0
    semantic_unseen: Literal["both", "skip", "zero"] = "both"
    loss: Literal["bce", "bce+dice"] = "bce"
    dice_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.loss not in ("bce", "bce+dice"):
            raise ConfigError(f"segment.loss must be 'bce' or 'bce+dice', got {self.loss!r}")
        if self.dice_weight < 0:
            raise ConfigError(f"segment.dice_weight must be >= 0, got {self.dice_weight}")


@dataclass
class SegmentRecipe:
    """A whole segmentation recipe."""

    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: SegmentModelConfig = field(default_factory=SegmentModelConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)


def video_scores(logits: torch.Tensor, target: torch.Tensor, background: int) -> dict[str, Any]:
    """One clip: logits (T, C, H, W), target (T, H, W) -> per-protocol results of its frames."""
    from avfusion.metrics.segmentation import avsbench_video, official_frame, semantic_frame

    logits = logits.float()
    if logits.shape[1] == 1:
        prob, gt = torch.sigmoid(logits[:, 0]), target > 0.5
    else:
        prob = 1.0 - torch.softmax(logits, 1)[:, background]
        gt = target != background
    prob, gt = prob.cpu().numpy(), gt.cpu().numpy()
    out: dict[str, Any] = {"avsbench": avsbench_video(prob, gt),
                           "official": [official_frame(p, g) for p, g in zip(prob, gt)]}
    if logits.shape[1] > 1:
        scores, labels = logits.cpu().numpy(), target.long().cpu().numpy()
        out["semantic"] = [semantic_frame(s, y) for s, y in zip(scores, labels)]
    return out


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Mean over images of 1 - (2 sum(p g) + eps) / (sum(p) + sum(g) + eps), p = sigmoid(logits[:, 0]);
    logits (B, 1, H, W), target (B, H, W) in [0, 1]."""
    p = torch.sigmoid(logits[:, 0].float()).flatten(1)
    g = target.float().flatten(1)
    return (1.0 - (2.0 * (p * g).sum(1) + eps) / (p.sum(1) + g.sum(1) + eps)).mean()


def binary_scores(prob: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """AV-Digits: foreground IoU and F (beta^2 0.3) of prob > 0.5 against a binary mask."""
    from avfusion.metrics.segmentation import f_measure, foreground_iou

    pred = prob > 0.5
    return {"fg_iou": foreground_iou(pred, gt), "F": f_measure(pred, gt)}


class SegmentTask(Task):
    """Segmenter training on annotated frames, evaluation under the named protocols; built from its recipe."""

    cfg: SegmentRecipe

    # ------------------------------------------------------------------ data
    @cached_property
    def _index(self):
        data = self.cfg.data
        if not data.name.startswith("avsbench_"):
            raise ConfigError("segmentation data.name must be avdigits, avsbench_s4, avsbench_ms3 or "
                              f"avsbench_avss, got {data.name!r}")
        return open_data_index(data)

    @cached_property
    def num_classes(self) -> int:
        """model.num_classes, else 1 (binary masks) or the index's class count (avsbench_avss)."""
        cfg = self.cfg
        if cfg.model.num_classes is not None:
            return cfg.model.num_classes
        if cfg.data.name == "avsbench_avss":
            return len(self._index.classes)
        return 1

    def _dataset(self, split: str, train: bool) -> Dataset:
        cfg = self.cfg
        if cfg.data.name == AVDIGITS:
            from avfusion.tasks.annotated import AnnotatedAVDigits

            size = cfg.data.size if split == cfg.data.train_split else cfg.data.eval_size
            return AnnotatedAVDigits(split, cfg.data, seed=cfg.train.seed, size=size, train=train)
        from avfusion.tasks.segment_data import AVSBenchFrames

        data = AVSBenchFrames(self._index, split, cfg.data, train=train, num_classes=self.num_classes,
                              seed=cfg.train.seed)
        if data.dropped:
            log.info("%s/%s: %d clip(s) without annotated frames left out", cfg.data.name, split, data.dropped)
        return data

    def train_dataset(self) -> Dataset:
        return self._train_set

    @cached_property
    def _train_set(self) -> Dataset:
        return self._dataset(self.cfg.data.train_split, train=True)

    def eval_dataset(self) -> Dataset | None:
        return None if self.cfg.data.eval_split is None else self._eval_set

    @cached_property
    def _eval_set(self) -> Dataset:
        return self._dataset(self.cfg.data.eval_split, train=False)

    def collate(self, samples: list) -> Any:
        """Evaluation clips of different lengths stay a list; everything else is stacked."""
        if "frames" in samples[0]:
            return list(samples)
        return default_collate(samples)

    # ------------------------------------------------------------------ model
    def build_model(self) -> nn.Module:
        from avfusion.models import build_model

        cfg = self.cfg
        m = cfg.model
        model = build_model("segment", encoder_config_for(m, cfg.data), num_classes=self.num_classes,
                            min_width=m.decoder_min_width)
        if m.pretrained:
            load_encoder_init(model.encoder, m.pretrained)
        else:
            init_streams(model.encoder, m)
        return model

    def model_for_evaluation(self, checkpoint: str) -> nn.Module:
        return load_task_model("segment", checkpoint, encoder_config_for(self.cfg.model, self.cfg.data))

    def param_hints(self, model: nn.Module) -> ParamHints:
        return encoder_param_hints(model, ramped_streams(self.cfg.model))

    # ------------------------------------------------------------------ training
    def batch_size(self, batch: Any) -> int:
        return len(batch) if isinstance(batch, list) else int(batch["image"].shape[0])

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        target = batch["target"] if "target" in batch else batch["mask"].float()
        out = model(batch["image"], batch["audio"], target)
        c = self.cfg.segment
        if c.loss == "bce" or out.logits.shape[1] != 1:
            return out.loss, {}
        dice = soft_dice_loss(out.logits, target)
        return out.loss + c.dice_weight * dice, {"bce": out.loss.detach(), "dice": dice.detach()}

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any) -> EvaluationReport:
        """A new report: every annotated frame of this rank's share, gathered over ranks (each item once),
        summarised."""
        from avfusion.metrics import Accumulator

        model = unwrap(model)
        device = next(model.parameters()).device
        acc = Accumulator("segment")
        for batch in loader:
            if isinstance(batch, list):  # AVSBench clips
                for clip in batch:
                    logits = model(clip["image"].to(device), clip["audio"].to(device)).logits
                    acc.add(int(clip["index"]), video_scores(logits, clip["target"], self.cfg.segment.background))
                continue
            logits = model(batch["image"].to(device), batch["audio"].to(device)).logits
            prob = torch.sigmoid(logits[:, 0].float()).cpu().numpy()
            for j, index in enumerate(batch["index"].tolist()):
                acc.add(int(index), self._avdigits_item(prob[j], batch, j))
        items = acc.gather()
        if not items:
            raise DataError("segmentation evaluation saw no items; check data.eval_split")
        return self._avdigits_report(items) if self.cfg.data.name == AVDIGITS else self._avsbench_report(items)

    @staticmethod
    def _avdigits_item(prob: np.ndarray, batch: dict, j: int) -> dict[str, Any]:
        """Model and baselines on one scene: binary scores and the official per-frame result."""
        from avfusion.metrics.segmentation import official_frame

        gt = batch["mask"][j].numpy()
        candidates = {"model": prob, "all_foreground": np.ones_like(prob),
                      "all_digits": batch["all_digits"][j].numpy().astype(np.float64),
                      "all_strokes": batch["all_strokes"][j].numpy().astype(np.float64)}
        return {name: {**binary_scores(p, gt), "official": official_frame(p, gt)} for name, p in candidates.items()}

    def _avdigits_report(self, items: dict) -> EvaluationReport:
        from avfusion.metrics.segmentation import summarize_official

        report = EvaluationReport("segment", dataset=AVDIGITS, split=self.cfg.data.eval_split,
                                  baselines="all_foreground,all_digits,all_strokes")
        values = list(items.values())
        for subject in values[0]:
            for metric in ("fg_iou", "F"):
                report.add(subject, metric, AVDIGITS_PROTOCOL, float(np.mean([v[subject][metric] for v in values])),
                           len(values))
            official = summarize_official([v[subject]["official"] for v in values])
            report.add_summary(official, ("miou_fg", "F"), subject=subject)
        return report

    def _avsbench_report(self, items: dict) -> EvaluationReport:
        from avfusion.metrics.segmentation import summarize_avsbench, summarize_official, summarize_semantic

        c = self.cfg.segment
        values = list(items.values())
        semantic = "semantic" in values[0]
        report = EvaluationReport("segment", dataset=self.cfg.data.name, split=self.cfg.data.eval_split,
                                  frames=sum(len(v["official"]) for v in values))
        subject = "foreground" if semantic else "model"
        avsbench = summarize_avsbench([v["avsbench"] for v in values])
        report.add_summary(avsbench, ("miou", "F"), subject=subject)
        official = summarize_official([f for v in values for f in v["official"]])
        report.add_summary(official, ("miou_fg", "miou", "F"), subject=subject)
        if semantic:
            frames = [f for v in values for f in v["semantic"]]
            for unseen in ("skip", "zero") if c.semantic_unseen == "both" else (c.semantic_unseen,):
                summary = summarize_semantic(frames, unseen=unseen, background=c.background)
                report.add_summary(summary, ("miou", "F", "miou_fg", "F_fg"))
        return report


TASK_CLASS = SegmentTask
RECIPE_CLASS = SegmentRecipe
