"""The one training loop: every task runs through :func:`run_training`."""
from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avfusion.data.loading import make_loader
from avfusion.engine import checkpoint as ckpt
from avfusion.engine import distributed as dist
from avfusion.engine.config import save_config, to_dict
from avfusion.engine.optim import LRSchedule, build_optimizer, param_groups, peak_lr
from avfusion.engine.reporting import MetricsWriter, progress_bar
from avfusion.engine.sampler import ResumableBatchSampler
from avfusion.engine.task import Evaluation, Task
from avfusion.engine.train_config import TrainConfig
from avfusion.errors import CheckpointError, ConfigError, NonFiniteLossError

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


@dataclass
class TrainResult:
    """What a run did. ``step`` counts optimizer steps (skipped non-finite ones included); ``eval_report``:
    the last evaluation's report (what ``task.evaluate`` returned; None without evaluation), whose
    ``metrics()`` are ``eval_metrics``."""

    output_dir: Path
    step: int
    epoch: int
    last_loss: float | None
    nonfinite_skipped: int
    resumed_from: Path | None
    last_checkpoint: Path | None
    final_dir: Path | None
    eval_metrics: dict[str, float] = field(default_factory=dict)
    model: nn.Module | None = None
    eval_report: Evaluation | None = None


def train_section(cfg: Any) -> TrainConfig:
    """``cfg`` itself if it is a TrainConfig, else its ``train`` attribute."""
    if isinstance(cfg, TrainConfig):
        return cfg
    section = getattr(cfg, "train", None)
    if not isinstance(section, TrainConfig):
        raise ConfigError(f"{type(cfg).__name__} has no 'train' section of type TrainConfig")
    return section


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_training(task: Task, output_dir: str | Path, resume: str | Path | None = "auto") -> TrainResult:
    """Train ``task`` as its recipe's ``train`` section (``task.cfg.train``) says, writing to ``output_dir``.

    ``resume``: "auto" continues from the newest intact checkpoint in ``output_dir/checkpoints``
    (or starts fresh if there is none); a path resumes from that checkpoint; None starts fresh and
    refuses an output directory that already holds checkpoints. Works alone or under torchrun.
    """
    tc = train_section(task.cfg)
    env = dist.init_distributed(tc.device)
    try:
        return _Run(task, tc, env, Path(output_dir)).train(resume)
    finally:
        dist.shutdown(env)


class _Run:
    def __init__(self, task: Task, tc: TrainConfig, env: dist.DistEnv, out: Path):
        self.task, self.cfg, self.tc, self.env, self.out = task, task.cfg, tc, env, out
        self.ckpt_dir = out / "checkpoints"
        if tc.precision == "fp16" and env.device.type != "cuda":
            raise ConfigError("train.precision 'fp16' needs a GPU (it uses a gradient scaler); use 'bf16' on CPU")
        seed_everything(tc.seed)  # identical initialisation on every rank
        self.raw_model = task.build_model().to(env.device)
        hints = task.param_hints(self.raw_model)
        groups = param_groups(self.raw_model, tc.weight_decay, hints, tc.layer_decay)
        self.lr = peak_lr(tc, env.world_size)
        self.optimizer = build_optimizer(groups, tc, self.lr)
        self.scaler = torch.amp.GradScaler(env.device.type, enabled=tc.precision == "fp16")
        self.dataset = task.train_dataset()
        self.sampler = ResumableBatchSampler(len(self.dataset), tc.batch_size, rank=env.rank,
                                             world_size=env.world_size, seed=tc.seed)
        self.steps_per_epoch = self.sampler.num_batches // tc.accum_steps
        if self.steps_per_epoch == 0:
            raise ConfigError(f"the training set ({len(self.dataset)} samples) is smaller than one step "
                              f"(batch_size {tc.batch_size} x accum_steps {tc.accum_steps} x "
                              f"{env.world_size} processes)")
        self.schedule = LRSchedule(self.lr, tc.min_lr, tc.warmup_epochs, tc.epochs, self.steps_per_epoch,
                                   tc.stream_ramp_epochs)
        self.total_steps = tc.max_steps or tc.epochs * self.steps_per_epoch
        self.loader_gen = torch.Generator()
        on_error, max_error_fraction = task.data_errors()
        self.loader = make_loader(self.dataset, tc.batch_size, train=True, batch_sampler=self.sampler,
                                  collate_fn=task.collate, num_workers=tc.num_workers, rank=env.rank,
                                  on_error=on_error, max_error_fraction=max_error_fraction, run_dir=out,
                                  pin_memory=env.device.type == "cuda", generator=self.loader_gen,
                                  worker_init_fn=_seed_worker)
        self.step = self.epoch = self.batch_in_epoch = self.skipped = 0
        self.last_loss: float | None = None
        self.last_ckpt: Path | None = None
        self.saved_step: int | None = None
        self.eval_metrics: dict[str, float] = {}
        self.eval_report: Evaluation | None = None
        seed_everything(tc.seed + env.rank)

    # ------------------------------------------------------------------ state
    def _state(self) -> dict:
        rngs = dist.all_gather_object(ckpt.capture_rng())
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step, "epoch": self.epoch,
            "samples_in_epoch": self.batch_in_epoch * self.tc.batch_size * self.env.world_size,
            "samples_per_step": self._samples_per_step(),
            "world_size": self.env.world_size,
            "nonfinite_skipped": self.skipped, "last_loss": self.last_loss,
            "rng": rngs,
        }

    def _samples_per_step(self) -> int:
        return self.tc.batch_size * self.tc.accum_steps * self.env.world_size

    def _save(self) -> None:
        state = self._state()  # every rank takes part (RNG gather)
        if self.env.is_main:
            self.last_ckpt = ckpt.save_checkpoint(state, self.ckpt_dir, self.step, self.tc.keep_last)
            log.info("checkpoint %s", self.last_ckpt)
        self.saved_step = self.step
        dist.barrier()

    def _load(self, resume: str | Path | None) -> Path | None:
        if resume is None:
            if ckpt.list_checkpoints(self.ckpt_dir):
                raise ConfigError(f"{self.ckpt_dir} already holds checkpoints; resume with resume='auto' "
                                  "(--resume auto) or choose another output directory")
            return None
        if str(resume) == "auto":
            found, error = None, None
            if self.env.is_main:
                try:
                    found = ckpt.load_latest(self.ckpt_dir)
                except CheckpointError as exc:
                    error = str(exc)
            chosen, error = dist.broadcast_object((str(found[0]) if found else None, error))
            if error is not None:
                raise CheckpointError(error)
            if chosen is None:
                if self.env.is_main:
                    log.info("no checkpoint in %s; starting from scratch", self.ckpt_dir)
                return None
            path = Path(chosen)
            state = found[1] if self.env.is_main else ckpt.load_checkpoint(path)
        else:
            path = Path(resume)
            state = ckpt.load_checkpoint(path)
        self._restore(state, path)
        return path

    def _restore(self, state: dict, path: Path) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: not a training checkpoint of this engine (format {state.get('format')})")
        if state["samples_per_step"] != self._samples_per_step():
            raise CheckpointError(
                f"{path} was written with {state['samples_per_step']} samples per step, this run has "
                f"{self._samples_per_step()}; keep batch_size x accum_steps x processes unchanged to resume")
        try:
            self.raw_model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: does not fit this model/optimizer ({exc})") from exc
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.skipped = state["step"], state["epoch"], state["nonfinite_skipped"]
        self.batch_in_epoch = state["samples_in_epoch"] // (self.tc.batch_size * self.env.world_size)
        self.last_loss = state["last_loss"]
        self.saved_step, self.last_ckpt = self.step, path
        rngs = state["rng"]
        if len(rngs) == self.env.world_size:
            ckpt.restore_rng(rngs[self.env.rank])
        else:
            log.warning("%s was written by %d processes, this run has %d: random states are reseeded, so the "
                        "run is not an exact continuation", path, len(rngs), self.env.world_size)
            seed_everything(self.tc.seed + self.env.rank + 7919 * self.step)
        if self.env.is_main:
            log.info("resumed from %s (step %d, epoch %d)", path, self.step, self.epoch)

    # ------------------------------------------------------------------ training
    def _wrap(self) -> tuple[nn.Module, nn.parallel.DistributedDataParallel | None]:
        model, ddp = self.raw_model, None
        if self.env.distributed:
            ids = [self.env.device.index] if self.env.device.type == "cuda" else None
            model = ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.tc.compile:
            model = torch.compile(model)
        return model, ddp

    def _autocast(self):
        return autocast_for(self.tc.precision, self.env.device)

    def train(self, resume: str | Path | None) -> TrainResult:
        resumed_from = self._load(resume)
        model, ddp = self._wrap()
        writer = None
        if self.env.is_main:
            save_config(self.cfg, self.out / "config.yaml")
            writer = MetricsWriter(self.out, resume_step=self.step if resumed_from else None,
                                   tensorboard=self.tc.tensorboard, wandb=self.tc.wandb,
                                   wandb_project=self.tc.wandb_project, config=to_dict(self.cfg))
            log.info("training %d steps (%d per epoch), peak lr %.3g, %d process(es) x batch %d x accum %d",
                     self.total_steps, self.steps_per_epoch, self.lr, self.env.world_size,
                     self.tc.batch_size, self.tc.accum_steps)
        bar = progress_bar(self.total_steps, self.step, self.tc.progress and self.env.is_main)
        try:
            self._loop(model, ddp, writer, bar)
            if self.saved_step != self.step:
                self._save()
            if self.tc.eval_every and not self.eval_metrics:
                self._evaluate(writer)
            final_dir = self.out / "final"
            if self.env.is_main:
                self.task.save_final(self.raw_model, final_dir)
            dist.barrier()
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        return TrainResult(self.out, self.step, self.epoch, self.last_loss, self.skipped, resumed_from,
                           self.last_ckpt, final_dir, self.eval_metrics, self.raw_model, self.eval_report)

    def _loop(self, model, ddp, writer, bar) -> None:
        tc, per_epoch = self.tc, self.steps_per_epoch * self.tc.accum_steps
        model.train()
        window = {"loss": 0.0, "steps": 0, "samples": 0, "logs": {}, "t0": time.perf_counter()}
        while self.step < self.total_steps:
            # the sampler's order and the dataset's randomness (drawn from (seed, epoch, index)) of this epoch
            self.loader.set_epoch(self.epoch, start_batch=self.batch_in_epoch)
            self.loader_gen.manual_seed(tc.seed * 1_000_003 + self.epoch * 1_009 + self.env.rank)
            batches = iter(self.loader)
            self.eval_metrics, self.eval_report = {}, None
            while self.batch_in_epoch < per_epoch and self.step < self.total_steps:
                lr = self.schedule.apply(self.optimizer, self.step)
                loss, samples, logs = self._step(model, ddp, batches)
                self.batch_in_epoch += tc.accum_steps
                epoch_done = self.batch_in_epoch == per_epoch
                if epoch_done:
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                if math.isfinite(loss):
                    self.last_loss = loss
                    window["loss"] += loss
                    window["steps"] += 1
                    for key, value in logs.items():
                        window["logs"][key] = window["logs"].get(key, 0.0) + value
                window["samples"] += samples
                self._report(writer, bar, window, lr, loss)
                if tc.checkpoint_every and self.step % tc.checkpoint_every == 0:
                    self._save()
                if epoch_done:
                    break
            if self.batch_in_epoch == 0 and tc.eval_every and self.epoch % tc.eval_every == 0:
                self._evaluate(writer)

    def _step(self, model, ddp, batches) -> tuple[float, int, dict[str, float]]:
        """One optimizer step over ``accum_steps`` batches; returns (mean loss over ranks, samples, logs)."""
        tc, samples = self.tc, 0
        totals = torch.zeros(2, dtype=torch.float64, device=self.env.device)  # [loss sum, non-finite count]
        logs: dict[str, float] = {}
        for micro in range(tc.accum_steps):
            batch = self.task.to_device(next(batches), self.env.device)
            samples += self.task.batch_size(batch) * self.env.world_size
            sync = ddp is None or micro == tc.accum_steps - 1
            with contextlib.nullcontext() if sync else ddp.no_sync():
                with self._autocast():
                    loss, step_logs = self.task.loss(model, batch)
                value = loss.detach().double()
                totals[0] += value
                totals[1] += (~torch.isfinite(value)).double()
                self.scaler.scale(loss / tc.accum_steps).backward()
            for key, item in step_logs.items():
                logs[key] = logs.get(key, 0.0) + float(item) / tc.accum_steps
        # the loss parts are reduced with the loss: every logged number is the mean over all processes
        # (tasks return the same keys on every rank and step)
        keys = sorted(logs)
        reduced = torch.cat([totals, torch.tensor([logs[k] for k in keys], dtype=torch.float64, device=totals.device)])
        dist.all_reduce_sum(reduced)
        totals = reduced[:2]
        logs = {k: reduced[2 + i].item() / self.env.world_size for i, k in enumerate(keys)}
        mean_loss = totals[0].item() / (tc.accum_steps * self.env.world_size)
        step_number = self.step + 1
        if totals[1].item() > 0:
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped += 1
            if self.skipped > tc.max_nonfinite_skips:
                raise NonFiniteLossError(step_number, mean_loss)
            if self.env.is_main:
                log.warning("non-finite loss %s at step %d: step skipped (%d of at most %d)",
                            mean_loss, step_number, self.skipped, tc.max_nonfinite_skips)
        else:
            if tc.clip_grad is not None:
                self.scaler.unscale_(self.optimizer)
                grad_norm = nn.utils.clip_grad_norm_(self.raw_model.parameters(), tc.clip_grad)
                logs["grad_norm"] = float(grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        self.step = step_number
        return mean_loss, samples, logs

    def _report(self, writer, bar, window: dict, lr: float, loss: float) -> None:
        elapsed = time.perf_counter() - window["t0"]
        rate = window["samples"] / elapsed if elapsed > 0 else 0.0
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4g}", lr=f"{lr:.3g}", samples_s=f"{rate:.1f}", refresh=False)
        if self.step % self.tc.log_every and self.step != self.total_steps:
            return
        if writer is not None:
            steps = max(window["steps"], 1)
            record = {"epoch": self.step / self.steps_per_epoch,
                      "loss": window["loss"] / steps if window["steps"] else float("nan"),
                      "lr": lr, "samples_per_s": rate, "nonfinite_skipped": self.skipped}
            record.update({k: v / steps for k, v in window["logs"].items()})
            writer.write(self.step, record)
        window.update(loss=0.0, steps=0, samples=0, logs={}, t0=time.perf_counter())

    def _evaluate(self, writer) -> None:
        """Run the task's evaluation on the plain model; RNG states are left as they were."""
        rng = ckpt.capture_rng()
        try:
            report = evaluate_model(self.task, self.raw_model, self.env)
        finally:
            self.raw_model.train()
            ckpt.restore_rng(rng)
        if report is None:
            return
        self.eval_report = report
        self.eval_metrics = {k: float(v) for k, v in report.metrics().items()}
        if writer is not None and self.eval_metrics:
            writer.write(self.step, {f"eval/{k}": v for k, v in self.eval_metrics.items()})
            log.info("step %d eval: %s", self.step, self.eval_metrics)


def autocast_for(precision: str, device: torch.device):
    """The autocast context of ``train.precision`` on ``device`` (none for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def evaluate_model(task: Task, model: nn.Module, env: Any) -> Evaluation | None:
    """The one evaluation path, for the training loop and ``avfusion evaluate`` alike: the task's
    evaluation set, this process's share of it in order (every item once over all processes), through the
    strict loader (a broken item stops the evaluation and names its file, whatever ``data.on_error`` says
    for training), in eval mode, without gradients, under ``train.precision``. Returns the report
    ``task.evaluate`` made (its ``metrics()`` are what training logs), or None when the recipe has no
    evaluation split."""
    dataset = task.eval_dataset()
    if dataset is None:
        return None
    tc = train_section(task.cfg)
    sampler = ResumableBatchSampler(len(dataset), tc.batch_size, rank=env.rank, world_size=env.world_size,
                                    shuffle=False, drop_last=False)
    loader = make_loader(dataset, tc.batch_size, train=False, batch_sampler=sampler, collate_fn=task.collate,
                         num_workers=tc.num_workers, rank=env.rank, pin_memory=env.device.type == "cuda")
    model.eval()
    with torch.no_grad(), autocast_for(tc.precision, env.device):
        return task.evaluate(model, loader)


def _seed_worker(worker_id: int) -> None:
    """Seed Python and NumPy in a DataLoader worker from its torch seed (set by the loader's generator)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
