"""A toy task for the engine's tests: MLP regression with dropout on a fixed synthetic set.

Also a script, so tests can run it in a subprocess (SIGKILL) or under torchrun:
    python _engine_toy.py OUT [key=value ...] [--resume auto] [--kill-at-call N]
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from avfusion.engine import Metrics, ParamHints, Task, TrainConfig, apply_overrides, build, run_training
from avfusion.errors import DecodeError


@dataclass
class ToySettings:
    samples: int = 64
    dim: int = 8
    hidden: int = 16
    dropout: float = 0.2


@dataclass
class ToyConfig:
    train: TrainConfig = field(default_factory=TrainConfig)
    toy: ToySettings = field(default_factory=ToySettings)


class ToyNet(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.stem = nn.Linear(dim, hidden)  # plays the "pretrained stream"
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(F.gelu(self.norm(self.stem(x))))).squeeze(-1)


class ToySet(Dataset):
    """Regression samples; the indices in `broken` raise DecodeError as an unreadable file would."""

    def __init__(self, samples: int, dim: int, seed: int = 1234, broken=()):
        self.broken = set(broken)
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(samples, dim, generator=gen)
        w = torch.randn(dim, generator=gen)
        self.y = torch.tanh(self.x @ w) + 0.05 * torch.randn(samples, generator=gen)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        if i in self.broken:
            raise DecodeError(f"/data/clip{i}.mp4", "truncated file")
        return self.x[i], self.y[i]


class ToyTask(Task):
    """Counts loss calls; can return NaN on given calls or SIGKILL itself at one."""

    def __init__(self, cfg: ToyConfig, nan_calls=(), kill_at_call: int | None = None, with_eval: bool = False,
                 broken=(), on_error: str = "raise", max_error_fraction: float = 0.01):
        super().__init__(cfg)
        self.calls, self.nan_calls, self.kill_at_call = 0, set(nan_calls), kill_at_call
        self.with_eval, self.evaluated = with_eval, 0
        self.broken, self.errors = tuple(broken), (on_error, max_error_fraction)
        self.batch_sizes: list[int] = []

    def build_model(self) -> nn.Module:
        toy = self.cfg.toy
        return ToyNet(toy.dim, toy.hidden, toy.dropout)

    def train_dataset(self) -> Dataset:
        return ToySet(self.cfg.toy.samples, self.cfg.toy.dim, broken=self.broken)

    def data_errors(self) -> tuple[str, float]:
        return self.errors

    def eval_dataset(self):
        return ToySet(20, self.cfg.toy.dim, seed=99) if self.with_eval else None

    def loss(self, model, batch):
        self.calls += 1
        if self.calls == self.kill_at_call:
            os.kill(os.getpid(), signal.SIGKILL)
        x, y = batch
        self.batch_sizes.append(len(y))
        loss = F.mse_loss(model(x), y)
        if self.calls in self.nan_calls:
            loss = loss * float("nan")
        return loss, {"mse": loss.detach()}

    def evaluate(self, model, loader) -> Metrics:
        self.evaluated += 1
        total, count = 0.0, 0
        for x, y in loader:
            total += F.mse_loss(model(x), y, reduction="sum").item()
            count += len(y)
        return Metrics({"mse": total / count})

    def param_hints(self, model) -> ParamHints:
        layers = {"stem": 0, "norm": 1, "head": 2}
        return ParamHints(layer_id=lambda n: layers[n.split(".")[0]],
                          pretrained=lambda n: n.startswith("stem."))


def toy_config(overrides=()) -> ToyConfig:
    base = {"train": {"epochs": 2, "batch_size": 8, "accum_steps": 2, "base_lr": 0.05, "warmup_epochs": 1,
                      "stream_ramp_epochs": 1, "clip_grad": 1.0, "checkpoint_every": 3, "keep_last": 2,
                      "log_every": 1, "progress": False, "device": "cpu", "seed": 7}}
    return build(ToyConfig, apply_overrides(base, list(overrides)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--resume", default=None)
    parser.add_argument("--kill-at-call", type=int, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO)
    cfg = toy_config(args.overrides)
    run_training(ToyTask(cfg, kill_at_call=args.kill_at_call), args.output, resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
