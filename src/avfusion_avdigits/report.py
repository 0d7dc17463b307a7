"""report.json (every number with its protocol and N, the configuration, the machine, the stage times)
and report.md (the same for a person, with the figures)."""
from __future__ import annotations

import json
from dataclasses import dataclass
import math
from pathlib import Path
from typing import Any

from avfusion_avdigits import results
from avfusion_avdigits.progress import duration
from avfusion_avdigits.stages import label, shared_keys, table

REPORT_FORMAT = 1


def build_report(runs: list, *, quick: bool, jobs: int, recipes: Path, machine_start: dict, machine_end: dict,
                 total_seconds: float, cpu_seconds: float, figure_seconds: float, figure_cpu_seconds: float,
                 figure_files: list[str]) -> dict[str, Any]:
    """report.json's content from the runs of each fusion type (the first one is the headline)."""
    from avfusion import __version__

    primary = runs[0]
    out: dict[str, Any] = {"format": REPORT_FORMAT, "benchmark": "avdigits", "mode": "quick" if quick else "full",
                           "avfusion_version": __version__, "fusions": [r.fusion for r in runs],
                           "primary_fusion": primary.fusion}
    out.update(results.sections(primary.stages))
    reports = {r.fusion: {k: s.report for k, s in r.stages.items()} for r in runs}
    if len(runs) > 1:
        out["ablation"] = {r.fusion: results.sections(r.stages) for r in runs}
        out["ablation_table"] = results.ablation(reports)
    out["runtime_seconds"] = total_seconds
    out["cpu_seconds"] = cpu_seconds
    out["targets"] = results.targets(reports[primary.fusion], total_seconds, quick, pipelines=len(runs))
    own = [(r, k, s) for i, r in enumerate(runs) for k, s in r.stages.items() if i == 0 or k not in shared_keys()]
    stage_seconds = {f"{r.fusion}/{k}": s.seconds for r, k, s in own}
    stage_cpu = {f"{r.fusion}/{k}": s.cpu_seconds for r, k, s in own}
    if figure_files:
        stage_seconds["figures"], stage_cpu["figures"] = figure_seconds, figure_cpu_seconds
    out["stage_seconds"] = stage_seconds
    out["stage_cpu_seconds"] = stage_cpu
    out["config"] = {"recipes": str(recipes), "jobs": jobs,
                     "stages": {f"{r.fusion}/{k}": {"task": s.stage.task, "recipe": s.stage.recipe,
                                                    "overrides": list(s.overrides), "steps": s.steps,
                                                    "resolved": s.config}
                                for r, k, s in own}}
    out["machine"] = {"start": machine_start, "end": machine_end}
    root = primary.root
    out["checkpoints"] = {f"{r.fusion}/{k}": str(s.checkpoint.relative_to(root)) for r, k, s in own}
    # every number above comes from these: each stage's own evaluation report, as the task wrote it
    out["evaluations"] = {f"{r.fusion}/{k}": s.report.to_dict() for r, k, s in own if s.report is not None}
    out["figures"] = figure_files
    return out


def write_report(directory: str | Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write report.json and report.md atomically; returns their paths."""
    directory = Path(directory)
    paths = directory / "report.json", directory / "report.md"
    from avfusion.checkpoints.io import atomic_write_text

    for path, text in zip(paths, (json.dumps(_clean(report), indent=2) + "\n", markdown(report))):
        atomic_write_text(path, text)
    return paths


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------------------- markdown
def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return lines + [""]


@dataclass(frozen=True)
class TaskTable:
    """One task's table in report.md, rendered from the evaluation reports of that task's stages (in the
    stage table's order): a row per (subject, protocol) of each report, a column per metric, the other
    stages' subjects marked with their stage (a baseline they share unchanged with the first stage is shown
    once); or, with ``by_head``, a row per stage and a column per subject (the classifier's heads) of
    ``metrics[0]``."""

    task: str
    heading: str
    metrics: tuple[str, ...]
    note: str
    by_head: bool = False


TASK_TABLES = (
    TaskTable("classify", "Classification (spoken digit, 10 classes; chance 0.10)", ("top1",),
              "`joint` is the mean of the image, audio and fusion heads' logits. The image alone cannot tell which "
              "of the 1-3 visible digits is spoken.", by_head=True),
    TaskTable("localize", "Localisation (which digit speaks)", ("AP50", "AUC", "mean_ciou"),
              "Primary protocol `fixed@0.5` on the min-max normalised heatmap, binary box ground truth "
              "(docs/avdigits.md); the `median` rule beside it. `contrastive` and `attention` are the read-outs; "
              "`center`, `full`: fixed maps; `random_digit`: the box of a visible digit drawn at random."),
    TaskTable("separate", "Separation (two voices; the image says which)", results.SEPARATION_METRICS,
              "dB, whole clip, averaged over the two sources of a mixture, then over mixtures. `swapped`: the "
              "model given, for each source, the OTHER source's image (the gap to the model is how much the image "
              "steers the separation); `mixture`: the mixture as every estimate; `audio-only`: the same separator "
              "trained and evaluated with the image replaced by zeros."),
    TaskTable("segment", "Segmentation (pixels of the speaking digit)", ("fg_iou", "F", "miou_fg"),
              "`F` with beta^2 0.3; `official`: DeepAVFusion's evaluator. `all_digits`: every visible digit's box "
              "(the target's baseline); `all_strokes`: every visible digit's strokes, what a segmenter that finds "
              "the digits but does not pick the speaking one predicts: beating it is what shows the sound is used."),
)


def evaluations(report: dict) -> dict[str, Any]:
    """stage key -> EvaluationReport of the headline fusion type, from report.json's ``evaluations``."""
    from avfusion.tasks.evaluation import EvaluationReport

    prefix = f"{report['primary_fusion']}/"
    return {name[len(prefix):]: EvaluationReport.from_dict(data)
            for name, data in (report.get("evaluations") or {}).items() if name.startswith(prefix)}


def _task_table(spec: TaskTable, reports: dict[str, Any]) -> list[str]:
    keys = [row["key"] for row in table()["stages"] if row["task"] == spec.task and reports.get(row["key"])]
    if not keys:
        return []
    lines = [f"## {spec.heading}", ""]
    if spec.by_head:
        heads = list(dict.fromkeys(r.subject for k in keys for r in reports[k].rows if r.metric == spec.metrics[0]))
        rows = []
        for k in keys:
            found = [r for r in reports[k].rows if r.metric == spec.metrics[0]]
            values = {r.subject: results.number(r.value) for r in found}
            rows.append([label(k), *[values.get(h) for h in heads], found[0].protocol, str(found[0].n)])
        lines += _table(["stage", *heads, "protocol", "N"], rows)
    else:
        rows, shown = [], {}
        for i, k in enumerate(keys):
            rows_of = reports[k].rows
            for subject, protocol in dict.fromkeys((r.subject, r.protocol) for r in rows_of):
                found = [r for r in rows_of if r.subject == subject and r.protocol == protocol]
                values = {r.metric: results.number(r.value) for r in found}
                if i > 0 and shown.get((subject, protocol)) == values:
                    continue  # a baseline the encoder does not change: shown once, under the headline stage
                shown.setdefault((subject, protocol), values)
                name = subject if i == 0 else f"{subject} ({k})"
                rows.append([name, *[values.get(m) for m in spec.metrics], protocol, str(found[0].n)])
        lines += _table(["subject", *spec.metrics, "protocol", "N"], rows)
    return lines + [spec.note, ""]


def _training_pool(modality: str, max_digits: int) -> str:
    if modality == "audio":
        return "one spoken digit per 1 s window, no image"
    digits = "one handwritten digit" if max_digits == 1 else f"1-{max_digits} handwritten digits"
    return f"{digits} per canvas, no sound"


def _unimodal(data: dict) -> list[str]:
    u = data.get("unimodal") or {}
    rows = []
    for modality in ("image", "audio"):
        e = u.get(modality)
        if e:
            metric = next(m for m in ("top1", "patch_top1", "mae_loss") if m in e)
            objective = e.get("objective")
            if objective == "supervised" and e.get("pool") == "patch":
                objective = "supervised per patch"
            rows.append([modality, _training_pool(modality, e.get("max_digits") or 1), objective, metric, e.get(metric),
                         str(e.get("steps")), e["protocol"], str(e["N"])])
    if not rows:
        return []
    return ["## Stage 1: unimodal initialisation", "",
            *_table(["stream", "training pool", "objective", "metric", "value", "steps", "protocol", "N"], rows),
            "The counterpart of MAE on ImageNet and AudioMAE on AudioSet: each stream learns its own modality "
            "alone, then its head (or decoder) is discarded and its weights initialise the early-fusion encoder "
            "(`model.image_init` / `model.audio_init`). The audio-visual link is left to stage 2 and the tasks.", ""]


def _pretraining(data: dict) -> list[str]:
    p = data.get("pretraining") or {}
    if "loss_first" not in p:
        return []
    a, b = p["loss_first"], p["loss_last"]
    lines = ["## Stage 2: masked audio-visual pretraining (AV-MAE, no labels, from the stage-1 streams)", "",
             f"Loss {_f(a['loss'])} (step {a['step']}) -> {_f(b['loss'])} (step {b['step']}); image "
             f"{_f(a.get('loss_image'))} -> {_f(b.get('loss_image'))}, audio {_f(a.get('loss_audio'))} -> "
             f"{_f(b.get('loss_audio'))} ({p['loss_note']}).", ""]
    knn = p.get("knn_monitor")
    if knn:
        shown = ", ".join(f"{k.replace('knn_', '')} {int(v) if k.endswith('N') else _f(v)}" for k, v in knn.items()
                          if k != "protocol")
        lines += [f"k-NN monitor on held-out scenes ({knn['protocol']}): {shown}.", ""]
    return lines


def _ablation(report: dict) -> list[str]:
    table = report.get("ablation_table")
    if not table:
        return []
    columns = list(next(iter(table.values())))
    rows = [[fusion, *values.values()] for fusion, values in table.items()]
    return ["## Ablation: fusion type", "", *_table(["fusion", *columns], rows),
            "Same pipeline, same sizes, each fusion type pretrained and evaluated on its own; `none`: two "
            "independent streams (no fusion blocks, so no attention read-out).", ""]


def markdown(report: dict) -> str:
    m = report["machine"]["start"]
    end = report["machine"]["end"]
    lines = [f"# AV-Digits benchmark ({report['mode']} run)", "",
             f"avfusion {report['avfusion_version']}; fusion {', '.join(report['fusions'])} (headline numbers: "
             f"{report['primary_fusion']}); total wall time {duration(report['runtime_seconds'])} "
             f"({report['runtime_seconds']:.0f} s), CPU time {report['cpu_seconds']:.0f} s.", "",
             f"Machine: {m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
             f"CUDA {'yes' if m['cuda'] else 'no'}; load average at start {m.get('load_average', 'n/a')}, at end "
             f"{end.get('load_average', 'n/a')}.", "",
             "## Targets", "",
             *_table(["target", "goal", "measured", "met"],
                     [[t["target"], t["goal"], t["value"], t["met"]] for t in report["targets"]])]
    missed = [t for t in report["targets"] if t["met"] is False]
    if missed:
        if report["mode"] == "quick":
            lines += ["The goals are the full run's: `--quick` is sized to show that every stage learns, not to "
                      "meet them.", ""]
        lines += ["What was measured about each target not met (what was tried, what limits it), in the source "
                  "tree's docs:", ""]
        lines += [f"- {t['target']}: {t['docs']}" for t in missed] + [""]
    reports = evaluations(report)
    lines += _unimodal(report) + _pretraining(report)
    for spec in TASK_TABLES:
        lines += _task_table(spec, reports)
    lines += _ablation(report)
    lines += ["## Wall time per stage", "",
              *_table(["stage", "wall seconds", "CPU seconds (all threads)"],
                      [[k, v, report["stage_cpu_seconds"].get(k)] for k, v in report["stage_seconds"].items()]),
              "CPU time does not depend on what else the machine runs; wall time does (see the load average).", ""]
    if report["figures"]:
        lines += ["## Figures", ""]
        lines += [f"![{Path(f).stem}]({f})" if f.endswith(".png") else f"- [{f}]({f})" for f in report["figures"]]
        lines += [""]
    lines += ["## Configuration", "",
              f"Downstream stages {report['config']['jobs']} at a time. "
              f"Recipes from `{report['config']['recipes']}`; every one takes its encoder and inputs from "
              "`encoder_tiny.yaml`. Per stage, the overrides (resolved recipes in report.json):", ""]
    for name, s in report["config"]["stages"].items():
        lines.append(f"- `{name}`: `{s['recipe']}` ({s['steps']} steps) `{' '.join(s['overrides'])}`")
    lines += ["", "Checkpoints (load with `avfusion.from_pretrained`):", ""]
    lines += [f"- `{k}`: `{v}`" for k, v in report["checkpoints"].items()]
    return "\n".join(lines) + "\n"


def summary(report: dict[str, Any], output: str | Path) -> str:
    """A few lines for the terminal: each target, measured, met or not, and where the report is."""
    width = max(len(t["target"]) for t in report["targets"])
    lines = [f"AV-Digits benchmark ({report['mode']}, {', '.join(report['fusions'])}) in "
             f"{duration(report['runtime_seconds'])}:"]
    for t in report["targets"]:
        met = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        lines.append(f"  {t['target'].ljust(width)}  {_f(t['value']):>8}  (goal {t['goal']}): {met}")
    if any(t["met"] is False for t in report["targets"]):
        lines.append("for each target not met, report.md names the docs section that says what was measured about it")
    lines.append(f"report: {Path(output) / 'report.md'}  (numbers with protocol and N: report.json)")
    return "\n".join(lines)
