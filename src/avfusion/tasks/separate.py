"""Visually guided source separation (mix-and-separate, the Sound-of-Pixels protocol).

Training: each mixture of K sources gives K examples (source k's frame, the mixture, source k's
log-mel as target); the separator predicts a mel mask, trained with BCE against the ratio or binary
mask, optionally weighted by the mixture magnitude (``Separator``). Evaluation on a fixed list of
mixtures: each source is re-synthesised from its mask and the mixture (``mask_to_waveform``) and
scored with BSS Eval v3 (SDR, SIR, SAR), beside SDR_mix and SDRi; mixtures with a near-silent
reference, estimate or mixture are skipped and counted (docs/protocols.md).

Baselines: ``mixture`` (the mixture itself as every estimate) is printed beside the model;
``separate.condition=zeros`` trains and evaluates the same separator with the image replaced by
zeros: the audio-only separator (its rows are labelled ``audio-only``).
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
from avfusion.tasks.common import DataConfig, ModelConfig, encoder_config_for, init_streams, ramped_streams
from avfusion.tasks.evaluation import EvaluationReport
from avfusion.tasks.separate_data import build_mixtures
from avfusion.tasks.weights import encoder_param_hints, load_encoder_init, load_task_model

log = logging.getLogger(__name__)

METRICS = ("SDR", "SIR", "SAR", "SDR_mix", "SDRi")
BASELINE_METRICS = ("SDR", "SIR", "SAR", "SDRi")  # SDR_mix of a baseline is its SDR
BASELINES = ("mixture",)


@dataclass
class SeparateModelConfig(ModelConfig):
    """``model:`` of a separation recipe.

    Attributes:
        pretrained: encoder weights to start from (a ``save_pretrained`` directory of any task, or an
            official checkpoint file); null: random init (or image_init/audio_init).
    """

    pretrained: str | None = None


@dataclass
class SeparateConfig:
    """``separate:``: mixtures, mask loss, conditioning and evaluation.

    Attributes:
        num_sources: sources per mixture (AV-Digits: 2).
        binary_mask: target mask spec > spec_mix (official recipe) instead of the ratio mask.
        weighted_loss: weight the BCE by clamp(log1p(mixture magnitude), 1e-3, 10).
        condition: "image" (the model); "zeros": the image is replaced by zeros (audio-only baseline).
        baselines: extra rows printed beside the model; "mixture": the mixture as every estimate.
        silence_threshold: mixtures with a reference, estimate or mixture of energy below this are skipped.
        train_list: clip datasets: file of item ids (first comma or whitespace field per line; a path
            relative to data.root unless absolute) restricting the training split, its ids looked up in
            every split, e.g. the official ``vggmusic_train.txt``; null: the whole split.
        eval_index: clip datasets: index whose items are the fixed evaluation mixtures (e.g.
            ``vggsound_music``, read from data.root); null: fixed mixtures drawn from data.eval_split.
        eval_mixtures: without eval_index: number of fixed evaluation mixtures (null: one per clip).
    """

    num_sources: int = 2
    binary_mask: bool = True
    weighted_loss: bool = False
    condition: Literal["image", "zeros"] = "image"
    baselines: tuple[str, ...] = BASELINES
    silence_threshold: float = 1e-5
    train_list: str | None = None
    eval_index: str | None = None
    eval_mixtures: int | None = None

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


def flatten_sources(batch: dict, zero_image: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, K, ...) sources -> B*K separator inputs: image, mixture log-mel repeated, target log-mel."""
    image, target = batch["image"].flatten(0, 1), batch["source_audio"].flatten(0, 1)  # (B*K, ...)
    k = batch["image"].shape[1]
    mix = batch["audio"].repeat_interleave(k, dim=0)  # (B*K, 1, n_mels, T)
    if zero_image:
        image = torch.zeros_like(image)
    return image, mix, target


class SeparateTask(Task):
    """Mix-and-separate training and BSS Eval evaluation through the engine, built from its recipe."""

    cfg: SeparateRecipe

    # ------------------------------------------------------------------ data
    def train_dataset(self) -> Dataset:
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
        s = cfg.separate
        model = build_model("separate", encoder_config_for(cfg.model, cfg.data), weighted_loss=s.weighted_loss,
                            binary_mask=s.binary_mask)
        init_streams(model.encoder, cfg.model)
        if cfg.model.pretrained:
            load_encoder_init(model.encoder, cfg.model.pretrained)
        return model

    def model_for_evaluation(self, checkpoint: str) -> nn.Module:
        cfg, s = self.cfg, self.cfg.separate
        return load_task_model("separate", checkpoint, encoder_config_for(cfg.model, cfg.data),
                               weighted_loss=s.weighted_loss, binary_mask=s.binary_mask)

    def param_hints(self, model: nn.Module) -> ParamHints:
        return encoder_param_hints(model, ramped_streams(self.cfg.model))

    # ------------------------------------------------------------------ training
    def collate(self, samples: list) -> dict:
        from avfusion.data.loading import collate_samples

        return collate_samples(samples)

    def batch_size(self, batch: dict) -> int:
        return int(batch["audio"].shape[0])

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image, mix, target = flatten_sources(batch, self.cfg.separate.condition == "zeros")
        return model(image, mix, target).loss, {}

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
        accs = {name: Accumulator(f"separate/{name}") for name in (subject, *s.baselines)}
        for batch in loader:
            if "source_waveform" not in batch:
                raise DataError("separation evaluation needs waveforms (source_waveform, mixture_waveform) in the "
                                "samples")
            image, mix, _ = flatten_sources(batch, s.condition == "zeros")
            b, k = batch["image"].shape[:2]
            logits = model(image.to(device), mix.to(device)).mask_logits.float().cpu()  # (B*K, 1, n_mels, T)
            waves_mix = batch["mixture_waveform"].float()  # (B, L)
            estimates = mask_to_waveform(waves_mix.repeat_interleave(k, dim=0), logits[:, 0], cfg.data.sample_rate,
                                         cfg.data.n_mels).reshape(b, k, -1)  # (B, K, L)
            refs = batch["source_waveform"].float()
            for j, index in enumerate(batch["index"].tolist()):
                accs[subject].add(index, evaluate_mixture(refs[j], estimates[j], waves_mix[j], s.silence_threshold))
                if "mixture" in accs:
                    as_estimate = waves_mix[j].expand(k, -1)
                    accs["mixture"].add(index, evaluate_mixture(refs[j], as_estimate, waves_mix[j],
                                                                s.silence_threshold))
        return self._report({name: acc.gather() for name, acc in accs.items()})

    def _report(self, results: dict[str, dict]) -> EvaluationReport:
        from avfusion.metrics import summarize_separation

        cfg = self.cfg
        report = EvaluationReport("separate", dataset=cfg.data.name, split=cfg.data.eval_split,
                                  num_sources=cfg.separate.num_sources, condition=cfg.separate.condition)
        for name, items in results.items():
            if not items:
                raise DataError("separation evaluation saw no mixtures; check data.eval_split")
            metrics = BASELINE_METRICS if name in BASELINES else METRICS
            report.add_summary(summarize_separation(list(items.values())), metrics, subject=name)
        return report


TASK_CLASS = SeparateTask
RECIPE_CLASS = SeparateRecipe
