"""Visually guided source separation (mix-and-separate, the Sound-of-Pixels protocol).

Training: each mixture of K sources gives K examples (source k's frame, the mixture, source k's
log-mel as target); the separator predicts a mel mask, trained with BCE against the ratio or binary
mask, optionally weighted by the mixture magnitude (``Separator``). Evaluation on a fixed list of
mixtures: each source is re-synthesised from its mask and the mixture (``mask_to_waveform``) and
scored with BSS Eval v3 (SDR, SIR, SAR), beside SDR_mix and SDRi; mixtures with a near-silent
reference, estimate or mixture are skipped and counted (docs/protocols.md).

Baselines: ``mixture`` (the mixture itself as every estimate) and ``swapped`` (the model given, for
each source, the frame of the mixture's NEXT source: how much the right image steers the separation)
are printed beside the model; ``separate.condition=zeros`` trains and evaluates the same separator
with the image replaced by zeros: the audio-only separator (its rows are labelled ``audio-only``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from avfusion.engine import ParamHints, Task, TrainConfig, unwrap
from avfusion.errors import ConfigError, DataError
from avfusion.tasks.common import AVDIGITS, DataConfig, ModelConfig, encoder_config_for, init_streams, ramped_streams
from avfusion.tasks.feature_cache import ModelFeatureCaches
from avfusion.tasks.evaluation import EvaluationReport
from avfusion.tasks.separate_data import build_mixtures
from avfusion.tasks.weights import encoder_param_hints, load_encoder_init, load_task_model

log = logging.getLogger(__name__)

METRICS = ("SDR", "SIR", "SAR", "SDR_mix", "SDRi")
BASELINE_METRICS = ("SDR", "SIR", "SAR", "SDRi")  # SDR_mix of a baseline is its SDR
BASELINES = ("mixture", "swapped")


@dataclass
class SeparateModelConfig(ModelConfig):
    """``model:`` of a separation recipe.

    Attributes:
        pretrained: encoder weights to start from (a ``save_pretrained`` directory of any task, or an
            official checkpoint file); null: random init (or image_init/audio_init).
        freeze_encoder: train the head only (the encoder stays in eval mode, without gradients).
    """

    pretrained: str | None = None
    freeze_encoder: bool = False


@dataclass
class SeparateConfig:
    """``separate:``: mixtures, mask loss, conditioning and evaluation.

    Attributes:
        num_sources: sources per mixture (AV-Digits: 2).
        head: the mask head: ``official`` (the official U-Net over the audio-token grid, ``avss_decoder``;
            what official checkpoints hold) or ``temporal`` (the mixture's log-mel frame by frame
            through a bidirectional GRU, conditioned by the fused image and fusion tokens; avfusion's).
        binary_mask: target mask spec > ref instead of the ratio mask spec / (spec + ref).
        mask_reference: what ``ref`` is: ``mixture`` (the official forms, spec_mix) or ``sources`` (the
            other sources of the mixture, which mix-and-separate knows: the ideal masks).
        weighted_loss: weight the BCE by clamp(log1p(mixture magnitude), 1e-3, 10).
        condition: "image" (the model); "zeros": the image is replaced by zeros (audio-only baseline).
        baselines: extra rows printed beside the model; "mixture": the mixture as every estimate;
            "swapped": the model given the frame of the mixture's next source (not with condition=zeros).
        silence_threshold: mixtures with a reference, estimate or mixture of energy below this are skipped.
        train_list: clip datasets: file of item ids (first comma or whitespace field per line; a path
            relative to data.root unless absolute) restricting the training split, its ids looked up in
            every split, e.g. the official ``vggmusic_train.txt``; null: the whole split.
        eval_index: clip datasets: index whose items are the fixed evaluation mixtures (e.g.
            ``vggsound_music``, read from data.root); null: fixed mixtures drawn from data.eval_split.
        eval_mixtures: without eval_index: number of fixed evaluation mixtures (null: one per clip).
        cache_features: temporal head on a frozen encoder: keep the encoder's features of every training
            mixture after their first use, so later epochs train the head alone
            (``avfusion.tasks.feature_cache``); needs the same mixtures every epoch (AV-Digits with
            data.fresh=false).
    """

    num_sources: int = 2
    head: Literal["official", "temporal"] = "official"
    binary_mask: bool = True
    mask_reference: Literal["mixture", "sources"] = "mixture"
    weighted_loss: bool = False
    condition: Literal["image", "zeros"] = "image"
    baselines: tuple[str, ...] = ("mixture",)
    silence_threshold: float = 1e-5
    train_list: str | None = None
    eval_index: str | None = None
    eval_mixtures: int | None = None
    cache_features: bool = False

    def __post_init__(self) -> None:
        if self.num_sources < 2:
            raise ConfigError(f"separate.num_sources must be >= 2, got {self.num_sources}")
        unknown = sorted(set(self.baselines) - set(BASELINES))
        if unknown:
            raise ConfigError(f"separate.baselines: unknown {unknown}; choose from {list(BASELINES)}")


@dataclass
class SeparateRecipe:
    """A whole separation recipe."""

    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: SeparateModelConfig = field(default_factory=SeparateModelConfig)
    separate: SeparateConfig = field(default_factory=SeparateConfig)


def flatten_sources(batch: dict, zero_image: bool, shift: int = 0) -> tuple[torch.Tensor, ...]:
    """(B, K, ...) sources -> B*K separator inputs: image, mixture log-mel repeated, target log-mel, and
    the other sources' log-mel (log10 of their summed mel power). ``shift``: source k gets the image of
    source (k + shift) mod K (1: the swapped-image baseline)."""
    images = batch["image"].roll(-shift, dims=1) if shift else batch["image"]
    sources = batch["source_audio"]  # (B, K, 1, n_mels, T) log10 mel power
    power = torch.pow(10.0, sources)
    others = torch.log10((power.sum(dim=1, keepdim=True) - power).clamp_min(1e-10))
    k = batch["image"].shape[1]
    mix = batch["audio"].repeat_interleave(k, dim=0)  # (B*K, 1, n_mels, T)
    image = torch.zeros_like(images.flatten(0, 1)) if zero_image else images.flatten(0, 1)
    return image, mix, sources.flatten(0, 1), others.flatten(0, 1)


class SeparateTask(Task):
    """Mix-and-separate training and BSS Eval evaluation through the engine, built from its recipe."""

    cfg: SeparateRecipe

    # ------------------------------------------------------------------ data
    def train_dataset(self) -> Dataset:
        cfg = self.cfg
        if cfg.separate.cache_features:
            if not (cfg.model.freeze_encoder and cfg.separate.head == "temporal"):
                raise ConfigError("separate.cache_features keeps the encoder's features of each training mixture: "
                                  "it needs separate.head=temporal and model.freeze_encoder=true")
            if cfg.data.name != AVDIGITS or cfg.data.fresh:
                raise ConfigError("separate.cache_features reuses each training mixture's features every epoch, so "
                                  "the mixtures must be the same every epoch: AV-Digits with data.fresh=false")
        return self._train_set

    @cached_property
    def _train_set(self) -> Dataset:
        cfg = self.cfg
        return build_mixtures(cfg.data, cfg.data.train_split, train=True, seed=cfg.train.seed, sep=cfg.separate)

    def eval_dataset(self) -> Dataset | None:
        return None if self.cfg.data.eval_split is None else self._eval_set

    @cached_property
    def _eval_set(self) -> Dataset:
        cfg = self.cfg
        return build_mixtures(cfg.data, cfg.data.eval_split, train=False, seed=cfg.train.seed, sep=cfg.separate)

    # ------------------------------------------------------------------ model
    def build_model(self) -> nn.Module:
        from avfusion.models import build_model

        cfg = self.cfg
        model = build_model("separate", encoder_config_for(cfg.model, cfg.data), **self._model_options)
        init_streams(model.encoder, cfg.model)
        if cfg.model.pretrained:
            load_encoder_init(model.encoder, cfg.model.pretrained)
        return model

    @property
    def _model_options(self) -> dict[str, Any]:
        s = self.cfg.separate
        return dict(weighted_loss=s.weighted_loss, binary_mask=s.binary_mask, head=s.head,
                    mask_reference=s.mask_reference, freeze_encoder=self.cfg.model.freeze_encoder)

    def model_for_evaluation(self, checkpoint: str) -> nn.Module:
        cfg = self.cfg
        return load_task_model("separate", checkpoint, encoder_config_for(cfg.model, cfg.data), **self._model_options)

    def param_hints(self, model: nn.Module) -> ParamHints:
        return encoder_param_hints(model, ramped_streams(self.cfg.model))

    # ------------------------------------------------------------------ training
    def collate(self, samples: list) -> dict:
        from avfusion.data.loading import collate_samples

        return collate_samples(samples)

    def batch_size(self, batch: dict) -> int:
        return int(batch["audio"].shape[0])

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image, mix, target, others = flatten_sources(batch, self.cfg.separate.condition == "zeros")
        features = None
        if self.cfg.separate.cache_features:
            features = tuple(f.flatten(0, 1) for f in self._feature_caches.get(unwrap(model), batch["index"]))
        return model(image, mix, target, others, features=features).loss, {}

    @cached_property
    def _feature_caches(self) -> ModelFeatureCaches:
        """The frozen encoder's features of every training mixture, (K, ...) per mixture."""
        zero = self.cfg.separate.condition == "zeros"

        def compute(model: nn.Module, batch: dict) -> tuple[torch.Tensor, ...]:
            image, mix = flatten_sources(batch, zero)[:2]
            k = batch["image"].shape[1]
            return tuple(f.unflatten(0, (-1, k)) for f in model.features(image, mix))

        return ModelFeatureCaches(self.train_dataset, compute, self.collate, self.to_device)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any) -> EvaluationReport:
        """A new report: separate every source of this rank's mixtures, score them, gather over ranks."""
        from avfusion.audio import mask_to_waveform
        from avfusion.metrics import Accumulator, evaluate_mixture

        cfg, s = self.cfg, self.cfg.separate
        model = unwrap(model)
        device = next(model.parameters()).device
        subject = "audio-only" if s.condition == "zeros" else "model"
        names = [b for b in s.baselines if not (b == "swapped" and s.condition == "zeros")]
        accs = {name: Accumulator(f"separate/{name}") for name in (subject, *names)}
        for batch in loader:
            if "source_waveform" not in batch:
                raise DataError("separation evaluation needs waveforms (source_waveform, mixture_waveform) in the "
                                "samples")
            b, k = batch["image"].shape[:2]
            waves_mix = batch["mixture_waveform"].float()  # (B, L)
            refs = batch["source_waveform"].float()

            def estimate(shift: int) -> torch.Tensor:
                image, mix = flatten_sources(batch, s.condition == "zeros", shift)[:2]
                logits = model(image.to(device), mix.to(device)).mask_logits.float().cpu()  # (B*K, 1, n_mels, T)
                return mask_to_waveform(waves_mix.repeat_interleave(k, dim=0), logits[:, 0], cfg.data.sample_rate,
                                        cfg.data.n_mels).reshape(b, k, -1)  # (B, K, L)

            estimates = {subject: estimate(0), "mixture": waves_mix[:, None].expand(-1, k, -1)}
            if "swapped" in accs:
                estimates["swapped"] = estimate(1)
            for j, index in enumerate(batch["index"].tolist()):
                for name, acc in accs.items():
                    acc.add(index, evaluate_mixture(refs[j], estimates[name][j], waves_mix[j], s.silence_threshold))
        return self._report({name: acc.gather() for name, acc in accs.items()})

    def _report(self, results: dict[str, dict]) -> EvaluationReport:
        from avfusion.metrics import summarize_separation

        cfg = self.cfg
        report = EvaluationReport("separate", dataset=cfg.data.name, split=cfg.data.eval_split,
                                  num_sources=cfg.separate.num_sources, condition=cfg.separate.condition,
                                  head=cfg.separate.head)
        for name, items in results.items():
            if not items:
                raise DataError("separation evaluation saw no mixtures; check data.eval_split")
            metrics = BASELINE_METRICS if name in BASELINES else METRICS
            report.add_summary(summarize_separation(list(items.values())), metrics, subject=name)
        return report


TASK_CLASS = SeparateTask
RECIPE_CLASS = SeparateRecipe
