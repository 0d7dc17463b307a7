"""The evaluation report every task produces: a table of named-protocol numbers with their N.

Each row says what produced a number (``subject``: a head, the model, or a baseline), which metric
and protocol (docs/protocols.md), its value, how many items were scored (N) and how many were skipped and
why. ``avfusion evaluate`` prints the table and writes it as JSON; during training the engine logs
``report.metrics()`` and hands the last report back in ``TrainResult.eval_report``.

Convention for task modules (used by ``avfusion evaluate``), every task built from its recipe
(``TASK_CLASS(cfg)``):

- ``task.evaluate(model, loader) -> EvaluationReport`` runs on every rank over that rank's share of
  ``task.eval_dataset()``, gathers across ranks itself, and returns a new report, the same on every rank;
  the engine's one evaluation path (``avfusion.engine.loop.evaluate_model``) returns it to the caller.
- ``task.model_for_evaluation(checkpoint)`` (optional) turns ``--checkpoint`` into a model;
  the default is :func:`avfusion.tasks.weights.load_task_model`.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

REPORT_FILE = "evaluation.json"
REPORT_FORMAT = 1


@dataclass
class Row:
    """One reported number.

    Attributes:
        subject: what produced it: a classifier head (image/audio/fusion/joint), "model", or a baseline.
        metric: e.g. "top1", "mAP", "SDR".
        protocol: the named protocol of docs/protocols.md, e.g. "top1", "mAP/seen", "bss_eval_v3".
        value: the number (NaN when nothing could be scored).
        n: items scored.
        skipped: items left out, by reason.
    """

    subject: str
    metric: str
    protocol: str
    value: float
    n: int
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.metric}"

    def skipped_text(self) -> str:
        total = sum(self.skipped.values())
        if not total:
            return "0"
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(self.skipped.items()))
        return f"{total} ({reasons})"


class EvaluationReport:
    """Rows plus free-form context (task, dataset, split, checkpoint, processes, ...)."""

    def __init__(self, task: str, rows: Iterable[Row] = (), **meta: Any):
        self.task = task
        self.rows: list[Row] = list(rows)
        self.meta: dict[str, Any] = dict(meta)

    def add(self, subject: str, metric: str, protocol: str, value: float, n: int,
            skipped: Mapping[str, int] | None = None) -> Row:
        counts = {str(k): int(v) for k, v in (skipped or {}).items() if v}
        row = Row(subject, metric, protocol, float(value), int(n), counts)
        self.rows.append(row)
        return row

    def add_summary(self, summary: Mapping[str, Any], metrics: Iterable[str], subject: str = "model",
                    protocol: str | None = None) -> None:
        """Rows from an ``avfusion.metrics`` summary ({protocol, N, skipped, metric: value, ...})."""
        for metric in metrics:
            self.add(subject, metric, protocol or summary["protocol"], summary[metric], summary["N"],
                     summary.get("skipped", {}))

    def get(self, subject: str, metric: str) -> Row:
        for row in self.rows:
            if row.subject == subject and row.metric == metric:
                return row
        raise KeyError(f"no row {subject}/{metric} in the {self.task} report")

    def metrics(self) -> dict[str, float]:
        """{"subject/metric": value} for the engine's log. When one subject/metric is reported under several
        protocols, the first row keeps the plain key and the others get "subject/metric[protocol]"."""
        out: dict[str, float] = {}
        for row in self.rows:
            key = row.key if row.key not in out else f"{row.key}[{row.protocol}]"
            out[key] = row.value
        return out

    # ------------------------------------------------------------------ output
    def table(self) -> str:
        """A fixed-width text table, one row per number."""
        header = ("subject", "metric", "protocol", "value", "N", "skipped")
        lines = [(r.subject, r.metric, r.protocol, _fmt(r.value), str(r.n), r.skipped_text()) for r in self.rows]
        widths = [max(len(str(c)) for c in col) for col in zip(header, *lines)]
        out = [f"{self.task} evaluation" + "".join(f"  {k}={v}" for k, v in self.meta.items() if _short(v))]
        for cells in (header, *lines):
            out.append("  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip())
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"format": REPORT_FORMAT, "task": self.task, "meta": _jsonable(self.meta),
                "rows": [{**asdict(r), "value": _json_number(r.value)} for r in self.rows]}

    def write(self, directory: str | Path, name: str = REPORT_FILE) -> Path:
        """Write ``directory/name`` (JSON; NaN as null) and return its path."""
        from avfusion.checkpoints.io import atomic_write_text

        return atomic_write_text(Path(directory) / name, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EvaluationReport":
        rows = [Row(r["subject"], r["metric"], r["protocol"],
                    float("nan") if r["value"] is None else float(r["value"]), int(r["n"]), dict(r["skipped"]))
                for r in data["rows"]]
        return cls(data["task"], rows, **data.get("meta", {}))

    @classmethod
    def read(cls, path: str | Path) -> "EvaluationReport":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def _short(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and len(str(value)) <= 80


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return _json_number(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)
