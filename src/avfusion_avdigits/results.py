"""The numbers of a pipeline run as report.json sections, and the benchmark's targets.

Every number keeps what produced it: ``{"top1": 0.83, "protocol": "top1", "N": 500, "skipped": {}}``.
Localisation's primary protocol is ``fixed@0.5`` (docs/avdigits.md); the ``median`` numbers sit beside them
under ``median``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Mapping

HEADS = ("image", "audio", "fusion", "joint")
PRIMARY_LOCALIZATION = "fixed@0.5"
SEPARATION_METRICS = ("SDR", "SIR", "SAR", "SDR_mix", "SDRi")


def number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def block(report, subject: str, protocol: str | None = None) -> dict[str, Any] | None:
    """The rows of ``subject`` (with ``protocol``, when given) -> {metric: value, protocol, N, skipped}."""
    rows = [r for r in report.rows if r.subject == subject and (protocol is None or r.protocol == protocol)]
    if not rows:
        return None
    out: dict[str, Any] = {r.metric: number(r.value) for r in rows}
    out.update(protocol=rows[0].protocol, N=rows[0].n, skipped=dict(rows[0].skipped))
    return out


def unimodal(runs: dict) -> dict[str, Any]:
    """Stage 1: each stream's own evaluation (top-1 of its supervised head, or its MAE loss)."""
    out: dict[str, Any] = {}
    for modality in ("image", "audio"):
        result = runs.get(f"unimodal_{modality}")
        if result is None or result.report is None:
            continue
        rows = [r for r in result.report.rows if r.subject == modality]
        entry = block(result.report, modality) or {}
        options = result.config.get("unimodal", {})
        entry["objective"] = options.get("objective")
        entry["pool"] = options.get("pool")
        entry["max_digits"] = options.get("max_digits", 1)
        entry["steps"] = result.steps
        out[modality] = entry if rows else None
    return out


def classification(runs: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("linear_probe", "linear_probe_stage1", "linear_probe_random_init", "finetune"):
        if key in runs and runs[key].report is not None:
            out[key] = {h: block(runs[key].report, h, "top1") for h in HEADS}
    return out


def localization(runs: dict, key: str = "localize") -> dict[str, Any]:
    if key not in runs:
        return {}
    report = runs[key].report
    protocols = sorted({r.protocol for r in report.rows})
    primary = next(p for p in protocols if p.endswith(PRIMARY_LOCALIZATION))
    others = [p for p in protocols if p != primary]

    def entry(subject: str) -> dict[str, Any] | None:
        main = block(report, subject, primary)
        if main is None:
            return None
        for p in others:
            main[p.rsplit("/", 1)[-1]] = block(report, subject, p)
        return main

    out: dict[str, Any] = {}
    for readout in ("contrastive", "attention"):
        out[readout] = entry(readout)
    subjects = dict.fromkeys(r.subject for r in report.rows)
    out["baselines"] = {s: entry(s) for s in subjects if s not in ("contrastive", "attention")}
    if key == "localize" and "localize_stage1" in runs:
        stage1 = localization(runs, "localize_stage1")
        out["stage1"] = {readout: stage1.get(readout) for readout in ("contrastive", "attention")}
    return out


def separation(runs: dict, key: str = "separate") -> dict[str, Any]:
    if key not in runs:
        return {}
    report = runs[key].report
    out = block(report, "model") or {}
    if key != "separate":
        return out
    baselines = {name: block(report, name) for name in dict.fromkeys(r.subject for r in report.rows)
                 if name != "model"}
    if "separate_audio_only" in runs:
        baselines["audio_only"] = block(runs["separate_audio_only"].report, "audio-only")
    out["baselines"] = baselines
    if "separate_stage1" in runs:
        out["stage1"] = separation(runs, "separate_stage1")
    return out


def segmentation(runs: dict, key: str = "segment") -> dict[str, Any]:
    if key not in runs:
        return {}
    report = runs[key].report
    primary = next(r.protocol for r in report.rows if r.subject == "model" and r.metric == "fg_iou")

    def entry(subject: str) -> dict[str, Any]:
        main = block(report, subject, primary)
        main["official"] = block(report, subject, "official")
        return main

    out = entry("model")
    if key != "segment":
        return out
    out["baselines"] = {s: entry(s) for s in dict.fromkeys(r.subject for r in report.rows) if s != "model"}
    if "segment_stage1" in runs:
        out["stage1"] = segmentation(runs, "segment_stage1")
    return out


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pretraining(runs: dict) -> dict[str, Any]:
    if "pretrain" not in runs:
        return {}
    records = [r for r in read_metrics(runs["pretrain"].run_dir) if isinstance(r.get("loss"), (int, float))]
    out: dict[str, Any] = {"steps": runs["pretrain"].steps}
    if records:
        first, last = records[0], records[-1]
        out["loss_first"] = {"step": first["step"], "loss": first["loss"], "loss_image": first.get("loss_image"),
                             "loss_audio": first.get("loss_audio")}
        out["loss_last"] = {"step": last["step"], "loss": last["loss"], "loss_image": last.get("loss_image"),
                            "loss_audio": last.get("loss_audio")}
        out["loss_note"] = "mean training loss over each logging window (MSE on the masked patches, image + audio)"
    knn = {k: v for k, v in runs["pretrain"].train_metrics.items() if k.startswith("knn")}
    if knn:
        out["knn_monitor"] = {**knn, "protocol": "knn-loo (top-1, leave-one-out, cosine)"}
    return out


def sections(runs: dict) -> dict[str, Any]:
    """Every task's section of one fusion type's pipeline."""
    return {"unimodal": unimodal(runs), "pretraining": pretraining(runs), "classification": classification(runs),
            "localization": localization(runs), "separation": separation(runs), "segmentation": segmentation(runs)}


# ----------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class Ref:
    """One number of a stage's evaluation report: the row of ``subject`` / ``metric`` whose protocol ends
    with ``protocol`` (when given; else the first such row)."""

    stage: str
    subject: str
    metric: str
    protocol: str | None = None

    def value(self, reports: Mapping[str, Any]) -> float | None:
        """The number, from ``reports`` (stage key -> EvaluationReport); None where it was not measured."""
        report = reports.get(self.stage)
        for row in report.rows if report is not None else ():
            if row.subject == self.subject and row.metric == self.metric and (
                    self.protocol is None or row.protocol.endswith(self.protocol)):
                return number(row.value)
        return None


#: Where docs/avdigits.md says what was measured about a task's targets (the report points there when one is
#: not met).
WHY = {"localization": "Localisation: what limits it", "separation": "Separation: what limits it",
       "segmentation": "Segmentation: what limits it", "classification": "Stage 1 and AV-MAE: what was measured",
       "run time": "Measured numbers"}
CHECKS: dict[str, Callable[[float, float], bool]] = {">=": lambda v, t: v >= t, ">": lambda v, t: v > t,
                                                     "<=": lambda v, t: v <= t}


@dataclass(frozen=True)
class Target:
    """A goal on one number of the evaluation reports, or on its margin over the best of ``minus``."""

    topic: str  # a key of WHY
    name: str
    ref: Ref
    check: str  # a key of CHECKS
    threshold: str  # as the report prints it
    minus: tuple[Ref, ...] = ()

    def value(self, reports: Mapping[str, Any]) -> float | None:
        value = self.ref.value(reports)
        if not self.minus:
            return value
        others = [v for v in (m.value(reports) for m in self.minus) if v is not None]
        return None if value is None or not others else value - max(others)


def row(topic: str, name: str, value: float | None, goal: str, met: Callable[[float], bool]) -> dict[str, Any]:
    """One target's line of report.json: what, the goal, the value, met (None: not measured), the docs section."""
    return {"target": name, "goal": goal, "value": value, "met": None if value is None else bool(met(value)),
            "docs": f"docs/avdigits.md, {WHY[topic]!r}"}


#: The benchmark's targets, each read from the stages' evaluation reports.
TARGETS = (
    Target("classification", "linear probe, joint top-1", Ref("linear_probe", "joint", "top1"), ">=", "0.90"),
    Target("classification", "fine-tune, joint top-1", Ref("finetune", "joint", "top1"), ">=", "0.97"),
    Target("localization", "localization AP50 (contrastive)", Ref("localize", "contrastive", "AP50", PRIMARY_LOCALIZATION),
           ">=", "0.80"),
    Target("localization", "localization AP50 (contrastive) minus random visible digit",
           Ref("localize", "contrastive", "AP50", PRIMARY_LOCALIZATION), ">=", "0.15",
           (Ref("localize", "random_digit", "AP50", PRIMARY_LOCALIZATION),)),
    Target("localization", "localization AP50 (attention) minus best of center and full",
           Ref("localize", "attention", "AP50", PRIMARY_LOCALIZATION), ">", "0",
           (Ref("localize", "center", "AP50", PRIMARY_LOCALIZATION), Ref("localize", "full", "AP50", PRIMARY_LOCALIZATION))),
    Target("separation", "separation SDR (dB)", Ref("separate", "model", "SDR"), ">=", "5"),
    Target("separation", "separation SDRi (dB)", Ref("separate", "model", "SDRi"), ">=", "5"),
    Target("separation", "separation SDRi, right image minus the other source's image (dB)",
           Ref("separate", "model", "SDRi"), ">=", "5", (Ref("separate", "swapped", "SDRi"),)),
    Target("segmentation", "segmentation fg IoU", Ref("segment", "model", "fg_iou"), ">=", "0.60"),
    Target("segmentation", "segmentation fg IoU minus all-digits mask", Ref("segment", "model", "fg_iou"), ">=",
           "0.20", (Ref("segment", "all_digits", "fg_iou"),)),
)

#: The ablation's headline numbers (report.md's table and the figure), per fusion type.
ABLATION = (("linear probe\njoint top-1", Ref("linear_probe", "joint", "top1")),
            ("probe, random\nencoder", Ref("linear_probe_random_init", "joint", "top1")),
            ("fine-tune\njoint top-1", Ref("finetune", "joint", "top1")),
            ("localisation\nAP50 contrastive", Ref("localize", "contrastive", "AP50", PRIMARY_LOCALIZATION)),
            ("localisation\nAP50 attention", Ref("localize", "attention", "AP50", PRIMARY_LOCALIZATION)),
            ("separation\nSDR (dB)", Ref("separate", "model", "SDR")),
            ("separation\nSDRi (dB)", Ref("separate", "model", "SDRi")),
            ("segmentation\nfg IoU", Ref("segment", "model", "fg_iou")))


def ablation(reports_by_fusion: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """fusion -> {column: value} of :data:`ABLATION`, from each fusion type's evaluation reports."""
    return {fusion: {name.replace("\n", " "): ref.value(reports) for name, ref in ABLATION}
            for fusion, reports in reports_by_fusion.items()}


def targets(reports: Mapping[str, Any], runtime_seconds: float, quick: bool, pipelines: int = 1) -> list[dict[str, Any]]:
    """The benchmark's targets against what the evaluation reports (stage key -> EvaluationReport) hold. The
    run-time budget is per pipeline: ``--fusion all`` runs ``pipelines`` = 3 of them."""
    budget = (180 if quick else 900) * pipelines
    goal = f"<= {budget} s ({'--quick' if quick else 'full run'}{f', {pipelines} fusion types' if pipelines > 1 else ''})"
    out = [row("run time", "run time", runtime_seconds, goal, lambda v: v <= budget)]
    for t in TARGETS:
        out.append(row(t.topic, t.name, t.value(reports), f"{t.check} {t.threshold}",
                       lambda v, t=t: CHECKS[t.check](v, float(t.threshold))))
    return out
