"""Where metrics go on rank 0: a JSONL file, TensorBoard when installed, W&B when asked, a progress bar."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from avfusion.errors import ConfigError

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    return value


class MetricsWriter:
    """Appends ``{"step": ..., ...}`` records to ``run_dir/metrics.jsonl`` (and TensorBoard / W&B).

    On resume, records written after ``resume_step`` by the interrupted run are dropped first,
    so the file reads as one uninterrupted run.
    """

    def __init__(self, run_dir: Path, *, resume_step: int | None = None, tensorboard: bool = True,
                 wandb: bool = False, wandb_project: str = "avfusion", config: dict | None = None):
        self.path = run_dir / "metrics.jsonl"
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and _record_step(line) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self._file = open(self.path, "a")
        self._tb = self._open_tensorboard(run_dir) if tensorboard else None
        self._wandb = self._open_wandb(run_dir, wandb_project, config) if wandb else None

    @staticmethod
    def _open_tensorboard(run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.debug("tensorboard is not installed; metrics go to metrics.jsonl only")
            return None
        return SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    @staticmethod
    def _open_wandb(run_dir: Path, project: str, config: dict | None):
        try:
            import wandb
        except ImportError:
            raise ConfigError("train.wandb is true but the wandb package is not installed; "
                              "pip install wandb, or set train.wandb=false") from None
        id_file = run_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.exists() else wandb.util.generate_id()
        id_file.write_text(run_id)
        return wandb.init(project=project, dir=str(run_dir), id=run_id, resume="allow", config=config or {})

    def write(self, step: int, values: dict[str, Any]) -> None:
        record = {"step": step, **{k: _plain(v) for k, v in values.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        numeric = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
        if self._tb is not None:
            for key, value in numeric.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(numeric, step=step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _record_step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 0


def progress_bar(total: int, initial: int, enabled: bool):
    """A tqdm bar over optimizer steps (ETA from tqdm); disabled off rank 0."""
    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)
