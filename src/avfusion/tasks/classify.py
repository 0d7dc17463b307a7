"""Audio-visual classification: linear probe and fine-tuning of image, audio and fusion heads.

Recipes follow the official ones (``eval_linprobe.py``, ``eval_finetune.py``): the linear probe
freezes the encoder, normalises each pooled feature with BatchNorm and trains with LARS (base lr 0.3,
no weight decay) on the joint logits; fine-tuning uses AdamW with layer decay 0.75, drop-path,
per-sample mixup with the reversed batch, label smoothing, and optionally the class-frequency bias
initialisation and loss reweighting. Evaluation reports every head (image, audio, fusion) and their
mean (joint): top-1 for single-label data, mAP / ROC-AUC / d' for multi-label data; with
``classify.protocol: vggsounder`` also VGGSounder's numbers (:mod:`avfusion.tasks.classify_vggsounder`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from avfusion.engine import ParamHints, Task, TrainConfig, unwrap
from avfusion.errors import ConfigError, DataError
from avfusion.tasks.classify_data import (class_frequency, dataset_class_names, dataset_multi_label,
                                          dataset_num_classes, dense_eval_dataset, frequency_bias)
from avfusion.randomness import Stream, sample_noise
from avfusion.tasks.common import (AVDIGITS, DataConfig, EpochSamples, ModelConfig, build_dataset,
                                   encoder_config_for, init_streams, ramped_streams)
from avfusion.tasks.evaluation import EvaluationReport
from avfusion.tasks.weights import encoder_param_hints, load_encoder_init, load_task_model

log = logging.getLogger(__name__)

HEADS = ("image", "audio", "fusion", "joint")


@dataclass
class ClassifyModelConfig(ModelConfig):
    """``model:`` of a classification recipe: the encoder, where its weights come from, the heads.

    Attributes:
        pretrained: encoder weights to start from: a ``save_pretrained`` directory (of any task; its
            encoder part) or an official checkpoint file; null: random init (or image_init/audio_init).
        linear_probe: freeze the encoder and put BatchNorm1d(affine=False) before each head.
        num_classes: null: the dataset's.
    """

    pretrained: str | None = None
    linear_probe: bool = False
    num_classes: int | None = None


@dataclass
class ClassifyConfig:
    """``classify:``: loss, augmentation and evaluation options.

    Attributes:
        loss: "joint": one loss on the mean of the three heads' logits (official); "heads": the mean of
            the three heads' losses (each head learns on its own; per-head numbers mean more).
        multi_label: multi-hot targets (AudioSet): binary cross-entropy, mAP / ROC-AUC / d' evaluation.
        label_smoothing: target = (1 - s) one-hot + s / classes.
        mixup: alpha of Beta(alpha, alpha) for per-sample mixup with the reversed batch; 0: off.
        mixup_prob: probability that a sample is mixed.
        bias_init: "zero", or "class_frequency": head biases log((f + 1e-3) / (1 - f + 1e-3)) from the
            training-set class frequencies f (official fine-tuning).
        reweight: restrict the loss to classes seen in training and divide it by their frequency
            (official fine-tuning; for single-label data this is the constant factor mean(1/f)).
        dense_windows: clip datasets: evaluate each clip on this many windows spread over its central
            10 s and average the logits (official: 10); 0: one centred window.
        map_variant: "seen" or "nanmean" (multi-label mAP protocol).
        modality_dropout: probability that a training sample is seen without its sound: its log-mel
            is replaced by the all-zero one (the localiser's neutral partner) and only the image head
            learns from it, so the image stream must recognise the class from the image alone
            (``loss: heads`` only; the draw is a function of (seed, epoch, index)). 0: off.
        protocol: "dataset": the dataset's numbers (top-1, or mAP / ROC-AUC / d'); "vggsounder": also
            VGGSounder's (VGGSound test clips; needs ``pip install 'avfusion[vggsounder]'``;
            docs/protocols.md), set by ``avfusion evaluate ... --protocol vggsounder``.
        vggsounder_dir: where the VGGSounder prediction files and results.json go (``avfusion evaluate
            --output DIR`` makes it DIR/vggsounder); null: a temporary folder.
    """

    loss: Literal["joint", "heads"] = "joint"
    multi_label: bool = False
    label_smoothing: float = 0.0
    mixup: float = 0.0
    mixup_prob: float = 1.0
    bias_init: Literal["zero", "class_frequency"] = "zero"
    reweight: bool = False
    dense_windows: int = 0
    map_variant: Literal["seen", "nanmean"] = "seen"
    modality_dropout: float = 0.0
    protocol: Literal["dataset", "vggsounder"] = "dataset"
    vggsounder_dir: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.label_smoothing < 1 or self.mixup < 0 or not 0 <= self.mixup_prob <= 1:
            raise ConfigError("classify: label_smoothing in [0, 1), mixup >= 0 and mixup_prob in [0, 1] required")
        if self.dense_windows < 0:
            raise ConfigError("classify.dense_windows must be >= 0")
        if not 0 <= self.modality_dropout < 1:
            raise ConfigError(f"classify.modality_dropout must be in [0, 1), got {self.modality_dropout}")
        if self.modality_dropout > 0 and self.loss != "heads":
            raise ConfigError("classify.modality_dropout needs classify.loss=heads (a sample without its "
                              "sound trains the image head only)")


@dataclass
class ClassifyRecipe:
    """A whole classification recipe."""

    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ClassifyModelConfig = field(default_factory=ClassifyModelConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)


# ----------------------------------------------------------------------------- loss
def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float, multi_label: bool) -> torch.Tensor:
    """(B,) class indices or (B, C) multi-hot -> (B, C) targets with on = 1 - s + s/C, off = s/C."""
    off = smoothing / num_classes
    hot = labels.float() if multi_label else F.one_hot(labels.long(), num_classes).float()
    if hot.shape[-1] != num_classes:
        raise DataError(f"labels have {hot.shape[-1]} classes, the model {num_classes}")
    return hot * (1.0 - smoothing) + off


def mixup(image: torch.Tensor, audio: torch.Tensor, targets: torch.Tensor, lam: torch.Tensor):
    """Mix every sample with the reversed batch: x = lam x + (1 - lam) x.flip(0); lam (B,)."""
    def mix(x: torch.Tensor) -> torch.Tensor:
        w = lam.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return x * w + x.flip(0) * (1.0 - w)
    return mix(image), mix(audio), mix(targets)


def head_loss(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool,
              frequency: torch.Tensor | None) -> torch.Tensor:
    """Soft cross-entropy (single-label) or BCE (multi-label), mean over the batch.

    ``frequency`` (C,) enables the official reweighting: only classes with f > 0 enter, and the loss
    is divided by f (elementwise for BCE; for cross-entropy the mean of 1/f scales the loss).
    """
    if frequency is not None:
        seen = frequency > 0
        logits, targets, frequency = logits[:, seen], targets[:, seen], frequency[seen]
    if multi_label:
        loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # (B, C)
        return (loss / frequency).mean() if frequency is not None else loss.mean()
    loss = -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()
    return loss * (1.0 / frequency).mean() if frequency is not None else loss


# ----------------------------------------------------------------------------- task
class ClassifyTask(Task):
    """Classification on the recipe's dataset through the engine, built from its recipe."""

    cfg: ClassifyRecipe

    # ------------------------------------------------------------------ data
    def train_dataset(self) -> Dataset:
        return self._train_set

    @cached_property
    def _train_set(self) -> Dataset:
        cfg = self.cfg
        return EpochSamples(build_dataset(cfg.data, cfg.data.train_split, train=True, seed=cfg.train.seed))

    def eval_dataset(self) -> Dataset | None:
        return None if self.cfg.data.eval_split is None else self._eval_set

    @cached_property
    def _eval_set(self) -> Dataset:
        cfg, c = self.cfg, self.cfg.classify
        if c.dense_windows > 0:
            samples = dense_eval_dataset(cfg.data, cfg.data.eval_split, c.dense_windows, seed=cfg.train.seed)
        else:
            samples = build_dataset(cfg.data, cfg.data.eval_split, train=False, seed=cfg.train.seed)
        return EpochSamples(samples)  # index = position in the (possibly concatenated) set

    @cached_property
    def num_classes(self) -> int:
        """model.num_classes, else the dataset's."""
        cfg = self.cfg
        if cfg.model.num_classes is not None:
            return cfg.model.num_classes
        if cfg.data.name == AVDIGITS:
            return 10
        return dataset_num_classes(self.train_dataset())

    def class_names(self) -> list[str] | None:
        """What the classes are called (AV-Digits: the digits; a clip dataset: its index's vocabulary), saved
        with the model; None where the data does not say or model.num_classes overrides the count."""
        cfg = self.cfg
        if cfg.model.num_classes is not None:
            return None
        if cfg.data.name == AVDIGITS:
            from avfusion.data.avdigits import CLASS_NAMES

            return list(CLASS_NAMES)
        return dataset_class_names(self.train_dataset())

    @cached_property
    def _class_frequency(self) -> torch.Tensor:
        """Training-set class frequencies (class_frequency bias init and loss reweighting)."""
        return class_frequency(self.train_dataset(), self.num_classes, self.cfg.classify.multi_label)

    # ------------------------------------------------------------------ model
    def build_model(self) -> nn.Module:
        from avfusion.models import build_model

        cfg = self.cfg
        m, c = cfg.model, cfg.classify
        num_classes = self.num_classes
        if cfg.data.name != AVDIGITS:
            labels_multi = dataset_multi_label(self.train_dataset())
            if labels_multi is not None and labels_multi != c.multi_label:
                raise ConfigError(f"{cfg.data.name} labels are {'multi' if labels_multi else 'single'}-label; set "
                                  f"classify.multi_label={str(labels_multi).lower()}")
        model = build_model("classify", encoder_config_for(m, cfg.data), num_classes=num_classes,
                            linear_probe=m.linear_probe, class_names=self.class_names())
        init_streams(model.encoder, m)
        if m.pretrained:
            load_encoder_init(model.encoder, m.pretrained)
        # the frequencies are read from the training set here, before training starts, as the loss needs them
        frequency = self._class_frequency if c.bias_init == "class_frequency" or c.reweight else None
        if c.bias_init == "class_frequency":
            bias = frequency_bias(frequency)
            for head in (model.image_head, model.audio_head, model.fusion_head):
                head.bias.data.copy_(bias)
        return model

    def model_for_evaluation(self, checkpoint: str) -> nn.Module:
        return load_task_model("classify", checkpoint, encoder_config_for(self.cfg.model, self.cfg.data))

    def param_hints(self, model: nn.Module) -> ParamHints:
        return encoder_param_hints(model, ramped_streams(self.cfg.model))

    # ------------------------------------------------------------------ training
    def collate(self, samples: list) -> dict:
        from avfusion.data.loading import collate_samples

        return collate_samples(samples)

    def batch_size(self, batch: dict) -> int:
        return int(batch["image"].shape[0])

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.cfg.classify
        image, audio = batch["image"], batch["audio"]
        targets = soft_targets(batch["label"], self.num_classes, c.label_smoothing, c.multi_label).to(image.device)
        if c.mixup > 0:
            image, audio, targets = mixup(image, audio, targets, self._mixup_lambda(batch).to(image.device))
        heard = None
        if c.modality_dropout > 0:
            u = sample_noise(self.cfg.train.seed, batch["epoch"], batch["index"], 1, Stream.MODALITY_DROPOUT)[:, 0]
            heard = (u >= c.modality_dropout).to(image.device)                  # (B,) False: no sound
            audio = audio * heard.to(audio.dtype).view(-1, *([1] * (audio.ndim - 1)))
        out = model(image, audio)
        freq = self._class_frequency.to(image.device) if c.reweight else None
        if c.loss == "joint":
            return head_loss(out.logits, targets, c.multi_label, freq), {}
        losses = {}
        for h, lg in zip(HEADS, (out.logits_image, out.logits_audio, out.logits_fusion)):
            rows = heard if (heard is not None and h != "image") else None      # the sound's heads: heard only
            if rows is not None and not bool(rows.any()):
                losses[f"loss_{h}"] = lg.sum() * 0.0                            # nothing heard in this batch
                continue
            losses[f"loss_{h}"] = head_loss(lg if rows is None else lg[rows],
                                            targets if rows is None else targets[rows], c.multi_label, freq)
        total = sum(losses.values()) / 3.0
        return total, {k: v.detach() for k, v in losses.items()}

    def _mixup_lambda(self, batch: dict) -> torch.Tensor:
        """Per-sample lambda, a pure function of (seed, epoch, index): Beta(a, a) with prob p, else 1."""
        from scipy.stats import beta

        c = self.cfg.classify
        u = sample_noise(self.cfg.train.seed, batch["epoch"], batch["index"], 2, Stream.MIXUP).double()
        lam = torch.from_numpy(beta.ppf(u[:, 1].numpy(), c.mixup, c.mixup))
        return torch.where(u[:, 0] < c.mixup_prob, lam, torch.ones_like(lam)).float()

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any) -> EvaluationReport:
        """A new report: every head on this rank's share of ``loader``, gathered over ranks (each clip once)."""
        from avfusion.metrics import Accumulator

        model = unwrap(model)
        if self.cfg.classify.protocol == "vggsounder":
            from avfusion.metrics.vggsounder import require_package

            require_package()  # before a long pass over the evaluation set
        device = next(model.parameters()).device
        acc = Accumulator("classify")
        for batch in loader:
            image, audio = batch["image"].to(device), batch["audio"].to(device)
            b, windows = image.shape[0], (image.shape[1] if image.ndim == 5 else 0)
            if windows:  # dense: (B, W, 3, H, W') windows per clip, logits averaged per clip
                image, audio = image.flatten(0, 1), audio.flatten(0, 1)
            out = model(image, audio)
            logits = torch.stack([out.logits_image, out.logits_audio, out.logits_fusion, out.logits])  # (4, N, C)
            if windows:
                logits = logits.reshape(4, b, windows, -1).mean(2)
            logits = logits.float().cpu().numpy()
            labels = batch["label"].cpu().numpy()
            acc.extend(batch["index"].tolist(), [(logits[:, j], labels[j]) for j in range(len(labels))])
        items = acc.gather()
        report = self._report(items)
        if self.cfg.classify.protocol == "vggsounder":
            self._add_vggsounder(report, items, getattr(model, "class_names", None))
        return report

    def _add_vggsounder(self, report: EvaluationReport, items: dict, class_names: list[str] | None) -> None:
        """VGGSounder rows: the checkpoint's class names (else the dataset's) and the clips' ids."""
        from avfusion.tasks.classify_vggsounder import add_rows

        ids = [self._eval_set.item_id(i) for i in items]
        names = class_names if class_names is not None else dataset_class_names(self._eval_set)
        add_rows(report, items, ids, names, self.cfg.train.seed, self.cfg.classify.vggsounder_dir)

    def _report(self, items: dict) -> EvaluationReport:
        from avfusion.metrics import summarize_multi_label, summarize_single_label

        cfg = self.cfg
        c = cfg.classify
        dense = c.dense_windows
        report = EvaluationReport("classify", dataset=cfg.data.name, split=cfg.data.eval_split,
                                  linear_probe=cfg.model.linear_probe, dense_windows=dense)
        if not items:
            raise DataError("classification evaluation saw no items; check data.eval_split")
        logits = np.stack([v[0] for v in items.values()], axis=1)  # (4, N, C)
        labels = np.stack([v[1] for v in items.values()])
        suffix = f"/dense{dense}" if dense else ""
        for h, head in enumerate(HEADS):
            if c.multi_label:
                summary = summarize_multi_label(logits[h], labels, c.map_variant)
                proto = summary["protocol"] + suffix
                report.add(head, "mAP", proto, summary["mAP"], summary["N"],
                           {"classes without positives": summary["classes_without_positives"]})
                report.add(head, "mAUC", "roc_auc" + suffix, summary["mAUC"], summary["N"],
                           {"classes without AUC": summary["classes_without_auc"]})
                report.add(head, "d_prime", "d_prime" + suffix, summary["d_prime"], summary["N"])
            else:
                summary = summarize_single_label(logits[h], labels)
                report.add(head, "top1", summary["protocol"] + suffix, summary["top1"], summary["N"])
        return report


TASK_CLASS = ClassifyTask
RECIPE_CLASS = ClassifyRecipe
