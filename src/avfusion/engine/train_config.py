"""The ``train:`` section of every recipe: what the engine needs to run a task."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from avfusion.errors import ConfigError


@dataclass
class TrainConfig:
    """Engine settings. Batch sizes are per process, as in the official recipes.

    Attributes:
        epochs: length of the learning-rate schedule, in passes over the training set.
        max_steps: stop after this many optimizer steps (checkpointing at the end); the schedule
            still spans ``epochs`` (the run goes on past ``epochs`` at ``min_lr`` if larger). None: run ``epochs``.
        batch_size: samples per process per forward pass.
        accum_steps: forward/backward passes accumulated per optimizer step.
        base_lr: learning rate per 256 samples; peak lr = base_lr x batch_size x accum_steps x world_size / 256.
        lr: absolute peak learning rate; when set, replaces the base_lr rule.
        min_lr: learning rate at the end of the cosine decay.
        warmup_epochs: linear warm-up from 0 to the peak lr (may be fractional).
        weight_decay: decoupled weight decay (AdamW) or LARS decay, never on biases, norms, 1-D params.
        betas: AdamW betas.
        momentum: LARS momentum.
        clip_grad: clip the global gradient norm to this value; None: no clipping.
        precision: "fp32"; "bf16" autocast (CPU or GPU); "fp16" autocast with a gradient scaler (GPU only).
        compile: wrap the model with ``torch.compile``.
        checkpoint_every: write a checkpoint every this many optimizer steps (0: only at the end).
        keep_last: number of checkpoints kept in ``OUTPUT/checkpoints``.
        max_nonfinite_skips: 0: a NaN/inf loss raises NonFiniteLossError; N > 0: skip such steps, and raise
            on the (N+1)-th.
        seed: seeds model initialisation, data order and every random number generator.
        num_workers: DataLoader worker processes per training process.
        log_every: log metrics (JSONL, TensorBoard, W&B) every this many optimizer steps.
        eval_every: call the task's ``evaluate`` every this many epochs and at the end (0: never).
        progress: show a progress bar on rank 0.
        tensorboard: also log to TensorBoard when the ``tensorboard`` package is installed.
        wandb: also log to Weights & Biases (needs ``wandb``); never on unless asked.
        wandb_project: W&B project name.
        layer_decay: layer-wise lr decay factor (fine-tuning); None: off. Needs the task's layer ids.
        stream_ramp_epochs: the pretrained streams' lr multiplier rises 0 -> 1 by half-cosine over this
            many epochs (official pretraining: epochs / 2); 0: off.
        optimizer: "adamw", or "lars" (linear probes).
        device: "auto" (CUDA when available), "cpu" or "cuda".
    """

    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 8
    accum_steps: int = 1
    base_lr: float = 1.5e-4
    lr: float | None = None
    min_lr: float = 0.0
    warmup_epochs: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    momentum: float = 0.9
    clip_grad: float | None = None
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False
    checkpoint_every: int = 1000
    keep_last: int = 2
    max_nonfinite_skips: int = 0
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    eval_every: int = 0
    progress: bool = True
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "avfusion"
    layer_decay: float | None = None
    stream_ramp_epochs: float = 0.0
    optimizer: Literal["adamw", "lars"] = "adamw"
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "accum_steps": self.accum_steps,
                    "keep_last": self.keep_last, "log_every": self.log_every}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {value}")
        non_negative = {"checkpoint_every": self.checkpoint_every, "max_nonfinite_skips": self.max_nonfinite_skips,
                        "num_workers": self.num_workers, "eval_every": self.eval_every,
                        "warmup_epochs": self.warmup_epochs, "stream_ramp_epochs": self.stream_ramp_epochs,
                        "weight_decay": self.weight_decay, "min_lr": self.min_lr}
        for name, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {value}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"train.max_steps must be >= 1 or null, got {self.max_steps}")
        if self.warmup_epochs > self.epochs:
            raise ConfigError(f"train.warmup_epochs ({self.warmup_epochs}) exceeds train.epochs ({self.epochs})")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ConfigError(f"train.layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise ConfigError(f"train.clip_grad must be > 0 or null, got {self.clip_grad}")
