"""The numbers of a pipeline run as report.json sections, and the benchmark's targets.

Every number keeps what produced it: ``{"top1": 0.83, "protocol": "top1", "N": 500, "skipped": {}}``.
Localisation's primary protocol is ``fixed@0.5`` (docs/avdigits.md); the ``median`` numbers sit beside them
under ``median``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

HEADS = ("image", "audio", "fusion", "joint")
PRIMARY_LOCALIZATION = "fixed@0.5"
SEPARATION_METRICS = ("SDR", "SIR", "SAR", "SDR_mix", "SDRi")


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def block(report, subject: str, protocol: str | None = None) -> dict[str, Any] | None:
    """The rows of ``subject`` (with ``protocol``, when given) -> {metric: value, protocol, N, skipped}."""
    rows = [r for r in report.rows if r.subject == subject and (protocol is None or r.protocol == protocol)]
    if not rows:
        return None
    out: dict[str, Any] = {r.metric: _number(r.value) for r in rows}
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
def lookup(data: dict, path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


#: Where docs/avdigits.md says what was measured about a task's targets (the report points there when one is
#: not met).
WHY = {"localization": "Localisation: what limits it", "separation": "Separation: what limits it",
       "segmentation": "Segmentation: what limits it", "classification": "Stage 1 and AV-MAE: what was measured",
       "run time": "Measured numbers"}


def _target(topic: str, name: str, value: float | None, goal: str, check: Callable[[float], bool]) -> dict[str, Any]:
    return {"target": name, "goal": goal, "value": value, "met": None if value is None else bool(check(value)),
            "docs": f"docs/avdigits.md, {WHY[topic]!r}"}


def targets(data: dict, runtime_seconds: float, quick: bool, pipelines: int = 1) -> list[dict[str, Any]]:
    """The benchmark's targets (issue 13) against what was measured. The run-time budget is per pipeline:
    ``--fusion all`` runs ``pipelines`` = 3 of them."""
    budget = (180 if quick else 900) * pipelines
    goal = f"<= {budget} s ({'--quick' if quick else 'full run'}{f', {pipelines} fusion types' if pipelines > 1 else ''})"
    out = [_target("run time", "run time", runtime_seconds, goal, lambda v: v <= budget)]
    out.append(_target("classification", "linear probe, joint top-1",
                       lookup(data, "classification.linear_probe.joint.top1"), ">= 0.90", lambda v: v >= 0.90))
    out.append(_target("classification", "fine-tune, joint top-1", lookup(data, "classification.finetune.joint.top1"),
                       ">= 0.97", lambda v: v >= 0.97))
    ap = lookup(data, "localization.contrastive.AP50")
    random_digit = lookup(data, "localization.baselines.random_digit.AP50")
    out.append(_target("localization", "localization AP50 (contrastive)", ap, ">= 0.80", lambda v: v >= 0.80))
    out.append(_target("localization", "localization AP50 (contrastive) minus random visible digit",
                       None if ap is None or random_digit is None else ap - random_digit, ">= 0.15",
                       lambda v: v >= 0.15))
    attention = lookup(data, "localization.attention.AP50")
    blind = [lookup(data, f"localization.baselines.{b}.AP50") for b in ("center", "full")]
    blind = [v for v in blind if v is not None]
    out.append(_target("localization", "localization AP50 (attention) minus best of center and full",
                       None if attention is None or not blind else attention - max(blind), "> 0", lambda v: v > 0))
    out.append(_target("separation", "separation SDR (dB)", lookup(data, "separation.SDR"), ">= 5", lambda v: v >= 5))
    out.append(_target("separation", "separation SDRi (dB)", lookup(data, "separation.SDRi"), ">= 5", lambda v: v >= 5))
    swapped = lookup(data, "separation.baselines.swapped.SDRi")
    sdri = lookup(data, "separation.SDRi")
    out.append(_target("separation", "separation SDRi, right image minus the other source's image (dB)",
                       None if sdri is None or swapped is None else sdri - swapped, ">= 5", lambda v: v >= 5))
    fg = lookup(data, "segmentation.fg_iou")
    all_digits = lookup(data, "segmentation.baselines.all_digits.fg_iou")
    out.append(_target("segmentation", "segmentation fg IoU", fg, ">= 0.60", lambda v: v >= 0.60))
    out.append(_target("segmentation", "segmentation fg IoU minus all-digits mask",
                       None if fg is None or all_digits is None else fg - all_digits, ">= 0.20", lambda v: v >= 0.20))
    return out
