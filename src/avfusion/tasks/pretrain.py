"""Masked audio-visual pretraining (AV-MAE) as an engine task, with the k-NN retrieval monitor."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from avfusion.engine import Metrics, ParamHints, Task, TrainConfig, unwrap
from avfusion.errors import ConfigError
from avfusion.randomness import Stream, sample_noise
from avfusion.tasks.common import (DataConfig, EpochSamples, ModelConfig, build_dataset,
                                   encoder_config_for, init_streams, ramped_streams)

log = logging.getLogger(__name__)



@dataclass
class PretrainModelConfig(ModelConfig):
    """``model:`` of a pretraining recipe: the encoder plus the MAE decoders and masking.

    Attributes:
        decoder_embed_dim / decoder_depth / decoder_num_heads / decoder_mlp_ratio: each modality's decoder.
        image_mask_ratio / audio_mask_ratio: fraction of patches removed.
        norm_pix_loss: reconstruct per-patch normalised targets (the released recipes).
    """

    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    decoder_mlp_ratio: float = 4.0
    image_mask_ratio: float = 0.75
    audio_mask_ratio: float = 0.8
    norm_pix_loss: bool = True


@dataclass
class MonitorConfig:
    """``monitor:``: the k-NN retrieval probe run every ``train.eval_every`` epochs on ``data.eval_split``.

    Attributes:
        ks: neighbourhood sizes.
    """

    ks: tuple[int, ...] = (1, 20)

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise ConfigError(f"monitor.ks must be a non-empty list of k >= 1, got {list(self.ks)}")


@dataclass
class PretrainRecipe:
    """A whole pretraining recipe."""

    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: PretrainModelConfig = field(default_factory=PretrainModelConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)


class PretrainTask(Task):
    """AV-MAE on the recipe's dataset. Masking noise of a sample is a pure function of
    (train.seed, epoch, sample index), so runs are reproducible and independent of the process count."""

    cfg: PretrainRecipe

    def collate(self, samples: list) -> dict:
        from avfusion.data.loading import collate_samples
        return collate_samples(samples)

    def build_model(self) -> nn.Module:
        from avfusion.models import build_model

        cfg = self.cfg
        m = cfg.model
        model = build_model("pretrain", encoder_config_for(m, cfg.data), decoder_embed_dim=m.decoder_embed_dim,
                            decoder_depth=m.decoder_depth, decoder_num_heads=m.decoder_num_heads,
                            decoder_mlp_ratio=m.decoder_mlp_ratio, image_mask_ratio=m.image_mask_ratio,
                            audio_mask_ratio=m.audio_mask_ratio, norm_pix_loss=m.norm_pix_loss)
        init_streams(model.encoder, m)
        return model

    def train_dataset(self) -> Dataset:
        cfg = self.cfg
        if cfg.train.eval_every:  # check the monitor's set now rather than after the first epoch
            held_out = self.eval_dataset()
            if held_out is not None and len(held_out) <= max(cfg.monitor.ks):
                raise ConfigError(f"the k-NN monitor needs more than {max(cfg.monitor.ks)} held-out items, "
                                  f"{cfg.data.eval_split} has {len(held_out)}; enlarge it or lower monitor.ks")
        return EpochSamples(build_dataset(cfg.data, cfg.data.train_split, train=True, seed=cfg.train.seed))

    def eval_dataset(self) -> Dataset | None:
        return None if self.cfg.data.eval_split is None else self._eval_set

    @cached_property
    def _eval_set(self) -> Dataset:
        cfg = self.cfg
        return build_dataset(cfg.data, cfg.data.eval_split, train=False, seed=cfg.train.seed)

    def param_hints(self, model: nn.Module) -> ParamHints:
        prefixes = tuple(f"encoder.{s}." for s in ramped_streams(self.cfg.model))
        return ParamHints(pretrained=(lambda name: name.startswith(prefixes)) if prefixes else None)

    def batch_size(self, batch: dict) -> int:
        return int(batch["image"].shape[0])

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        encoder = unwrap(model).encoder
        device = batch["image"].device
        noise = {name: sample_noise(self.cfg.train.seed, batch["epoch"], batch["index"], stream.num_patches, sid).to(device)
                 for name, stream, sid in (("image_noise", encoder.image, Stream.MASK_IMAGE),
                                           ("audio_noise", encoder.audio, Stream.MASK_AUDIO))}
        out = model(batch["image"], batch["audio"], **noise)
        return out.loss, {"loss_image": out.loss_image.detach(), "loss_audio": out.loss_audio.detach()}

    def evaluate(self, model: nn.Module, loader: Any) -> Metrics:
        """k-NN retrieval accuracy of mean-pooled image, audio and fusion features (all ranks' items)."""
        from avfusion.metrics.accumulate import Accumulator
        from avfusion.metrics.knn import summarize

        acc = Accumulator("knn monitor")
        encoder = unwrap(model).encoder
        device = next(encoder.parameters()).device
        for batch in loader:
            out = encoder(batch["image"].to(device), batch["audio"].to(device))
            pooled = [t.float().mean(1).cpu().numpy() for t in (out.image, out.audio, out.fusion)]
            labels = batch["label"].cpu().numpy()
            for j, i in enumerate(batch["index"].tolist()):
                acc.add(int(i), (pooled[0][j], pooled[1][j], pooled[2][j], labels[j]))
        items = list(acc.gather().values())
        features = {kind: np.stack([it[j] for it in items]) for j, kind in enumerate(("image", "audio", "fusion"))}
        summary = summarize(features, np.stack([it[3] for it in items]), tuple(self.cfg.monitor.ks))
        metric = summary["metric"]
        result = {f"knn_{metric}_{kind}@{k}": value for kind in features for k, value in summary[kind].items()}
        result["knn_N"] = float(summary["N"])
        return Metrics(result)

    def save_final(self, model: nn.Module, directory) -> None:
        super().save_final(model, directory)
        log.info("final AV-MAE weights in %s (load with avfusion.from_pretrained)", directory)


TASK_CLASS, RECIPE_CLASS = PretrainTask, PretrainRecipe  # see avfusion.tasks.registry
