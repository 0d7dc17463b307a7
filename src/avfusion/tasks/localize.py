"""Visual sound localisation: the ``attention`` and ``contrastive`` read-outs, trained and evaluated.

``attention`` is training-free (the fusion blocks' attention over the image tokens); ``contrastive``
trains a light head without labels on audio-visual pairs (``avfusion.models.localization``).
Evaluation (docs/protocols.md, docs/avdigits.md) scores every read-out the model has, beside the ``center``
and ``full`` baselines (and, on AV-Digits, the box of a random visible digit), with AP50, AUC and
mean cIoU under each binarisation rule of the recipe. See docs/localization.md.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from avfusion.engine import ParamHints, Task, TrainConfig, unwrap
from avfusion.errors import CheckpointError, ConfigError, DataError
from avfusion.tasks.common import (AVDIGITS, DataConfig, EpochSamples, ModelConfig, build_dataset, encoder_config_for,
                                   init_streams, ramped_streams)
from avfusion.tasks.evaluation import EvaluationReport
from avfusion.tasks.feature_cache import ModelFeatureCaches
from avfusion.tasks.weights import encoder_param_hints, layer_id_fn, load_encoder_init

log = logging.getLogger(__name__)

BASELINES = ("center", "full")


@dataclass
class LocalizeModelConfig(ModelConfig):
    """``model:`` of a localisation recipe: the encoder, its weights, and the contrastive head.

    Attributes:
        pretrained: encoder weights: a ``save_pretrained`` directory (any task) or an official file.
        proj_dim: width of the contrastive embeddings.
        hidden_dim: hidden width of the two projection heads (0: linear).
        query: what the audio side of the contrast is: "audio" (mean of the audio tokens) or
            "fusion" (mean of the fusion tokens).
        temperature: InfoNCE temperature.
        freeze_encoder: train the head only (the encoder stays in eval mode, without gradients).
        neutral_partner: encode each side beside a neutral partner (zero log-mel beside the image,
            zero image beside the audio) instead of its own, for training and heatmaps: no fusion leak,
            and every pair of the batch is a negative at 2 encoder passes per pair
            (``localize.pairing`` / ``negatives`` are then unused). See docs/localization.md.
        mil_top_k: an image's score for an audio is the mean of its ``mil_top_k`` best patch scores
            (1: the best patch, the official rule); objects covering several patches train them all.
    """

    pretrained: str | None = None
    proj_dim: int = 128
    hidden_dim: int = 512
    query: Literal["audio", "fusion"] = "audio"
    temperature: float = 0.07
    freeze_encoder: bool = True
    neutral_partner: bool = False
    mil_top_k: int = 1


@dataclass
class LocalizeConfig:
    """``localize:``: read-out, contrastive pairing, and evaluation.

    Attributes:
        readout: "contrastive" (train the head) or "attention" (training-free; evaluate only).
        attention_blocks: fusion blocks the attention read-out averages: "last", "all", or positions
            among the fusion blocks (e.g. [-2, -1]).
        pairing: contrastive scores from one pass over the true pairs ("joint") or from passes over
            shifted pairs, each negative image encoded beside the audio it is scored against ("cross").
        negatives: "cross": negatives per audio (null: batch size - 1).
        eval_dataset: test set: "flickr", "vggss", or null for ``data.name`` / ``data.eval_split``
            (AV-Digits: the sounding digit's box).
        eval_root: root of that test set (flickr, vggss).
        eval_index_options: extra keyword arguments of its index loader.
        binarize: binarisation rules, each reported: "median" and/or "fixed@t".
        gt_size: side of the ground-truth maps of flickr / vggss (224); AV-Digits uses its canvas.
        upsample: how patch heatmaps reach the ground-truth resolution: "patch_centres" (bilinear with
            half-pixel centres: each patch's value sits at its centre) or "corners" (the metric's own
            bilinear resize with align_corners=True, as the EZ-VSL code does; it stretches the grid of
            patch centres to the image corners).
        cache_features: keep the frozen encoder's features of every training item after their first
            use, so later epochs train the heads alone (``avfusion.tasks.feature_cache``). Needs
            ``model.freeze_encoder``, ``model.neutral_partner`` and a training set that is the same every
            epoch (AV-Digits with ``data.fresh=false``); on AV-Digits the heads then see many more pairs per
            CPU-second (docs/avdigits.md). The cache lives in memory (items x image tokens x width).
    """

    readout: Literal["contrastive", "attention"] = "contrastive"
    attention_blocks: str | list[int] = "last"
    pairing: Literal["joint", "cross"] = "cross"
    negatives: int | None = None
    eval_dataset: str | None = None
    eval_root: str | None = None
    eval_index_options: dict[str, Any] = field(default_factory=dict)
    binarize: tuple[str, ...] = ("median", "fixed@0.5")
    gt_size: int = 224
    upsample: Literal["patch_centres", "corners"] = "patch_centres"
    cache_features: bool = False

    def __post_init__(self) -> None:
        from avfusion.metrics.localization import binarize_map

        for rule in self.binarize:
            try:
                binarize_map(np.zeros((1, 1)), rule)
            except ValueError as exc:
                raise ConfigError(f"localize.binarize: {exc}") from None
        if not self.binarize:
            raise ConfigError("localize.binarize needs at least one rule, e.g. [median, fixed@0.5]")


@dataclass
class LocalizeRecipe:
    """A whole localisation recipe."""

    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: LocalizeModelConfig = field(default_factory=LocalizeModelConfig)
    localize: LocalizeConfig = field(default_factory=LocalizeConfig)


# ----------------------------------------------------------------------------- heatmaps
def to_pixels(maps: torch.Tensor, size: int, upsample: str = "patch_centres") -> np.ndarray:
    """(B, rows, cols) heatmaps -> float64 numpy (B, size, size) by ``upsample`` ("corners": unchanged,
    the metric resizes them itself with align_corners=True)."""
    maps = maps.detach().float().cpu()
    if upsample == "patch_centres":
        maps = torch.nn.functional.interpolate(maps[:, None], size=(size, size), mode="bilinear",
                                               align_corners=False)[:, 0]
    return maps.double().numpy()


def random_digit_heatmap(boxes: np.ndarray, num_digits: int, size: int, seed: int, index: int) -> np.ndarray:
    """Baseline: the box of one visible digit drawn uniformly, a pure function of (seed, index)."""
    from avfusion.randomness import Stream, numpy_rng
    from avfusion.tasks.annotated import boxes_mask

    k = int(numpy_rng(seed, 0, index, Stream.RANDOM_DIGIT).integers(num_digits))
    return boxes_mask(boxes[k:k + 1], size).astype(np.float64)


# ----------------------------------------------------------------------------- task
class LocalizeTask(Task):
    """Contrastive head training, and evaluation of every read-out against the baselines; built from its
    recipe."""

    cfg: LocalizeRecipe

    # ------------------------------------------------------------------ model
    def build_model(self) -> nn.Module:
        from avfusion.models import EarlyFusionEncoder
        from avfusion.models.localization import ContrastiveLocalizer

        cfg = self.cfg
        m = cfg.model
        encoder = EarlyFusionEncoder(encoder_config_for(m, cfg.data))
        if m.pretrained:
            load_encoder_init(encoder, m.pretrained)
        else:
            init_streams(encoder, m)
        if cfg.localize.readout == "attention":
            return encoder
        return ContrastiveLocalizer(encoder, proj_dim=m.proj_dim, hidden_dim=m.hidden_dim, query=m.query,
                                    temperature=m.temperature, freeze_encoder=m.freeze_encoder,
                                    neutral_partner=m.neutral_partner, mil_top_k=m.mil_top_k)

    def model_for_evaluation(self, checkpoint: str) -> nn.Module:
        """``--checkpoint``: a trained localiser directory, or (attention read-out) any encoder weights."""
        from avfusion.checkpoints import load
        from avfusion.checkpoints.loading import recorded_task

        cfg = self.cfg
        if recorded_task(checkpoint) == "localize":
            return load(checkpoint, expect="localize")
        if cfg.localize.readout == "contrastive":
            raise CheckpointError(f"{checkpoint} holds no contrastive localisation head; train one with `avfusion "
                                  f"train localize RECIPE model.pretrained={checkpoint} --output DIR` and evaluate "
                                  "DIR/final, or evaluate the training-free read-out with localize.readout=attention")
        from avfusion.models import EarlyFusionEncoder

        encoder = EarlyFusionEncoder(encoder_config_for(cfg.model, cfg.data))
        load_encoder_init(encoder, checkpoint)
        return encoder.eval()

    def param_hints(self, model: nn.Module) -> ParamHints:
        if not hasattr(unwrap(model), "encoder"):  # the attention read-out: the bare encoder, nothing to train
            depth = unwrap(model).depth
            return ParamHints(layer_id=layer_id_fn(depth), num_layers=depth + 1)
        return encoder_param_hints(model, ramped_streams(self.cfg.model))

    # ------------------------------------------------------------------ training
    def train_dataset(self) -> Dataset:
        cfg = self.cfg
        if cfg.localize.readout == "attention":
            raise ConfigError("the attention read-out is training-free: evaluate it with `avfusion evaluate localize "
                              "RECIPE localize.readout=attention --checkpoint PRETRAINED`")
        if cfg.train.batch_size < 2:
            raise ConfigError("contrastive training contrasts the pairs of a batch: train.batch_size must be >= 2")
        if cfg.localize.cache_features:
            if not (cfg.model.freeze_encoder and cfg.model.neutral_partner):
                raise ConfigError("localize.cache_features keeps the encoder's features of each training item, so "
                                  "the encoder must not change and must see each side alone: set "
                                  "model.freeze_encoder=true and model.neutral_partner=true, or cache_features=false")
            if cfg.data.name != AVDIGITS or cfg.data.fresh:
                raise ConfigError("localize.cache_features reuses each training item's features every epoch, so the "
                                  "items must be the same every epoch: AV-Digits with data.fresh=false (clips of "
                                  "other datasets are augmented anew each epoch); or set cache_features=false")
        return self._train_set

    @cached_property
    def _train_set(self) -> Dataset:
        cfg = self.cfg
        return EpochSamples(build_dataset(cfg.data, cfg.data.train_split, train=True, seed=cfg.train.seed))

    @cached_property
    def _feature_caches(self) -> ModelFeatureCaches:
        """The frozen encoder's features of every training item (``localize.cache_features``)."""
        return ModelFeatureCaches(self.train_dataset, lambda model, b: model.neutral_features(b["image"], b["audio"]),
                                  self.collate, self.to_device)

    def batch_size(self, batch: dict) -> int:
        return int(batch["image"].shape[0])

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.cfg.localize
        if c.cache_features:
            out = model(None, None, pairing=c.pairing, features=self._feature_caches.get(unwrap(model), batch["index"]))
        else:
            out = model(batch["image"], batch["audio"], pairing=c.pairing, negatives=c.negatives)
        return out.loss, {}

    # ------------------------------------------------------------------ evaluation
    def eval_dataset(self) -> Dataset | None:
        """AV-Digits: its annotated evaluation split (None without data.eval_split); else the named test set."""
        cfg = self.cfg
        if (cfg.localize.eval_dataset or cfg.data.name) == AVDIGITS and cfg.data.eval_split is None:
            return None
        return self._eval_set

    @cached_property
    def _eval_set(self) -> Dataset:
        cfg, c = self.cfg, self.cfg.localize
        name = c.eval_dataset or cfg.data.name
        if name == AVDIGITS:
            from avfusion.tasks.annotated import AnnotatedAVDigits
            return AnnotatedAVDigits(cfg.data.eval_split, cfg.data, seed=cfg.train.seed, size=cfg.data.eval_size)
        from avfusion.tasks.localize_data import LocalizationTestSet
        root = c.eval_root or (cfg.data.root if c.eval_dataset is None else None)
        return LocalizationTestSet(name, root, cfg.data, c.gt_size, c.eval_index_options)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any) -> EvaluationReport:
        """A new report: cIoU of every read-out and baseline per item, gathered over ranks (each item once),
        summarised."""
        from avfusion.metrics import Accumulator
        from avfusion.models.localization import heatmaps

        model = unwrap(model)
        device = next(model.parameters()).device
        acc = Accumulator("localize")
        blocks = self.cfg.localize.attention_blocks
        for batch in loader:
            maps = heatmaps(model, batch["image"].to(device), batch["audio"].to(device), blocks)
            size = batch["gt"].shape[-1] if "gt" in batch else batch["mask"].shape[-1]
            maps = {k: to_pixels(v, size, self.cfg.localize.upsample) for k, v in maps.items()}
            for j, index in enumerate(batch["index"].tolist()):
                acc.add(int(index), self._score_item(batch, j, int(index), {k: v[j] for k, v in maps.items()}))
        return self._report(acc.gather())

    def _ground_truth(self, batch: dict, j: int) -> tuple[np.ndarray, str]:
        """Item j's ground-truth map and the name of its rule (consensus, union, box)."""
        from avfusion.tasks.annotated import boxes_mask

        if "gt" in batch:
            return batch["gt"][j].numpy().astype(np.float64), self._eval_set.rule
        return boxes_mask(batch["box"][j].numpy(), batch["mask"].shape[-1]).astype(np.float64), "box"

    def _score_item(self, batch: dict, j: int, index: int, maps: dict[str, np.ndarray]) -> dict:
        """{(subject, protocol): cIoU or Skipped} for one item."""
        from avfusion.metrics.localization import center_heatmap, ciou, full_heatmap

        gt, rule = self._ground_truth(batch, j)
        candidates = dict(maps)
        candidates["center"] = center_heatmap(gt.shape)
        candidates["full"] = full_heatmap(gt.shape)
        if "num_digits" in batch:
            candidates["random_digit"] = random_digit_heatmap(batch["boxes"][j].numpy(), int(batch["num_digits"][j]),
                                                              gt.shape[-1], self.cfg.train.seed, index)
        out: dict = {}
        for subject, heatmap in candidates.items():
            for rule_b in self.cfg.localize.binarize:
                out[(subject, f"ciou/{rule}/{rule_b}")] = ciou(heatmap, gt, rule_b)
        return out

    def _report(self, items: dict) -> EvaluationReport:
        from avfusion.metrics.localization import summarize

        if not items:
            raise DataError("localisation evaluation saw no items; check the evaluation set")
        cfg = self.cfg
        c = cfg.localize
        name = c.eval_dataset or cfg.data.name
        keys = list(next(iter(items.values())))
        report = EvaluationReport("localize", dataset=name, split="test" if name != AVDIGITS else cfg.data.eval_split,
                                  attention_blocks=str(c.attention_blocks),
                                  baselines=",".join(s for s in dict.fromkeys(k[0] for k in keys)
                                                     if s not in ("attention", "contrastive")))
        if getattr(self._eval_set, "without_box", 0):
            report.meta["items_without_box_scored_0"] = self._eval_set.without_box
        notes = getattr(self._eval_set, "notes", None)
        if notes:
            report.meta["annotation_file_notes"] = "; ".join(f"{what}: {n}" for what, n in notes.items())
        for subject, protocol in keys:
            summary = summarize([v[(subject, protocol)] for v in items.values()], protocol)
            report.add_summary(summary, ("AP50", "AUC", "mean_ciou"), subject=subject)
        return report


TASK_CLASS = LocalizeTask
RECIPE_CLASS = LocalizeRecipe
