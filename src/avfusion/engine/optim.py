"""Optimizers and learning-rate schedules: parameter groups, warm-up + cosine, layer decay, stream ramp."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from avfusion.engine.task import ParamHints
from avfusion.engine.train_config import TrainConfig
from avfusion.errors import ConfigError


def no_weight_decay(name: str, param: torch.Tensor, extra=()) -> bool:
    """Biases, norm parameters, every 1-D parameter and the ``extra`` names get no weight decay."""
    leaf = name.rsplit(".", 1)[-1]
    return param.ndim <= 1 or leaf == "bias" or "norm" in name.lower() or name in extra or leaf in extra


def param_groups(model: nn.Module, weight_decay: float, hints: ParamHints | None = None,
                 layer_decay: float | None = None) -> list[dict]:
    """Trainable parameters grouped by (decay, layer, pretrained).

    Each group carries ``weight_decay``, ``lr_scale`` (layer decay: ``layer_decay ** (num_layers - id)``)
    and ``pretrained`` (the stream ramp applies), plus a readable ``name``.
    """
    hints = hints or ParamHints()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if layer_decay is not None and layer_decay != 1.0 and hints.layer_id is None:
        raise ConfigError("train.layer_decay is set but the task gives no layer ids (ParamHints.layer_id)")
    use_layers = hints.layer_id is not None and layer_decay is not None
    ids = {n: hints.layer_id(n) for n, _ in named} if use_layers else {}
    num_layers = hints.num_layers if hints.num_layers is not None else max(ids.values(), default=0)
    groups: dict[tuple, dict] = {}
    for name, param in named:
        decay = not no_weight_decay(name, param, hints.no_weight_decay)
        layer = ids.get(name, num_layers)
        pretrained = bool(hints.pretrained and hints.pretrained(name))
        key = (layer, pretrained, decay)
        if key not in groups:
            groups[key] = {
                "name": f"layer{layer}{'_pretrained' if pretrained else ''}_{'decay' if decay else 'no_decay'}",
                "params": [], "weight_decay": weight_decay if decay else 0.0,
                "lr_scale": (layer_decay ** (num_layers - layer)) if use_layers else 1.0,
                "pretrained": pretrained,
            }
        groups[key]["params"].append(param)
    return [groups[k] for k in sorted(groups)]


def peak_lr(cfg: TrainConfig, world_size: int) -> float:
    """The absolute lr, or base_lr x effective batch / 256."""
    if cfg.lr is not None:
        return cfg.lr
    return cfg.base_lr * cfg.batch_size * cfg.accum_steps * world_size / 256


@dataclass(frozen=True)
class LRSchedule:
    """Per-step lr: linear warm-up, half-cosine to ``min_lr``; pretrained streams ramp 0 -> 1.

    Times are in epochs, ``epoch = step / steps_per_epoch`` (fractional), as in the official code.
    """

    peak: float
    min_lr: float
    warmup_epochs: float
    epochs: float
    steps_per_epoch: int
    stream_ramp_epochs: float = 0.0

    def epoch_at(self, step: int) -> float:
        return step / self.steps_per_epoch

    def lr_at(self, step: int) -> float:
        t = self.epoch_at(step)
        if t < self.warmup_epochs:
            return self.peak * t / self.warmup_epochs
        span = self.epochs - self.warmup_epochs
        progress = min(1.0, (t - self.warmup_epochs) / span) if span > 0 else 1.0
        return self.min_lr + (self.peak - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def stream_scale_at(self, step: int) -> float:
        t = self.epoch_at(step)
        if self.stream_ramp_epochs <= 0 or t >= self.stream_ramp_epochs:
            return 1.0
        return 0.5 - 0.5 * math.cos(math.pi * t / self.stream_ramp_epochs)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every group's lr for ``step`` (0-based index of the step about to run); return the base lr."""
        lr, ramp = self.lr_at(step), self.stream_scale_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0) * (ramp if group.get("pretrained") else 1.0)
        return lr


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017) as used for linear probes by MAE: SGD with momentum whose update of
    each matrix is rescaled by ``trust_coefficient * |w| / |g + wd * w|``; 1-D parameters are plain SGD."""

    def __init__(self, params, lr: float = 0.0, weight_decay: float = 0.0, momentum: float = 0.9,
                 trust_coefficient: float = 0.001):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, trust_coefficient=trust_coefficient)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                if p.ndim > 1:
                    update = update.add(p, alpha=group["weight_decay"])
                    w_norm, u_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(update)
                    trust = torch.where((w_norm > 0) & (u_norm > 0),
                                        group["trust_coefficient"] * w_norm / u_norm, torch.ones_like(w_norm))
                    update = update * trust
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(update)
                p.add_(buf, alpha=-group["lr"])
        return loss


def build_optimizer(groups: list[dict], cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """AdamW (betas from cfg) or LARS over ``groups``; per-group weight decay is kept."""
    if cfg.optimizer == "lars":
        return LARS(groups, lr=lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
