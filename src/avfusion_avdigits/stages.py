"""The stages of the AV-Digits pipeline, loaded from the one table ``stages.yaml`` beside this module.

That file is the pipeline's data: each stage's task, recipe, where its encoder comes from, its own recipe
changes, its sizes and measured cost (full run and ``--quick``), its progress title, report label and
training-curve title. This module turns it into :class:`Stage` objects (:func:`plan`), the overrides that
give a stage its encoder once its inputs exist (:func:`encoder_overrides`), and the schedule's priorities
and time estimate (:func:`priorities`, :func:`makespan`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from avfusion.errors import ConfigError

FUSIONS = ("factorized", "dense", "none")
TABLE = Path(__file__).resolve().with_name("stages.yaml")
MODES = ("full", "quick")
SIZE_KEYS = {"scenes", "eval_scenes", "epochs", "batch", "estimate_s", "extra"}
ROW_KEYS = {"key", "task", "recipe", "title", "label", "curve", "encoder", "overrides", *MODES}


@dataclass(frozen=True)
class Stage:
    """One training run of the pipeline, for one mode (full or quick) and fusion type.

    Attributes:
        key: the stage's name in reports, run directories and checkpoints.
        task: the task of ``avfusion.tasks.registry``.
        recipe: file name among the AV-Digits recipes.
        title: what the stage does, for the progress display.
        encoder: where the encoder's weights come from (a key of the table's ``encoders``).
        needs: the stages that must have finished first (the encoder's inputs).
        overrides: the table's common ones, the stage's sizes and own changes, then the fusion type.
        estimate_s: seconds on 2 idle CPU cores (the progress display's prior).
        label: the stage's row in the report, where it has one of its own.
        curve: the title of its training-curve panel, where it has one.
    """

    key: str
    task: str
    recipe: str
    title: str
    encoder: str
    needs: tuple[str, ...]
    overrides: tuple[str, ...]
    estimate_s: float
    label: str | None = None
    curve: str | None = None


@lru_cache(maxsize=None)
def table() -> dict[str, Any]:
    """stages.yaml, checked: every row has its fields, every encoder is known, every size is complete."""
    import yaml

    data = yaml.safe_load(TABLE.read_text())
    encoders = data["encoders"]
    keys = [row["key"] for row in data["stages"]]
    for row in data["stages"]:
        where = f"{TABLE}: stage {row.get('key')!r}"
        unknown = set(row) - ROW_KEYS
        missing = {"key", "task", "recipe", "title", "encoder", *MODES} - set(row)
        if unknown or missing:
            raise ConfigError(f"{where}: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}")
        if row["encoder"] not in encoders:
            raise ConfigError(f"{where}: encoder {row['encoder']!r} is none of {sorted(encoders)}")
        for mode in MODES:
            if set(row[mode]) - SIZE_KEYS or not {"scenes", "eval_scenes", "epochs", "batch", "estimate_s"} <= set(row[mode]):
                raise ConfigError(f"{where}: {mode} must give scenes, eval_scenes, epochs, batch, estimate_s "
                                  f"(and optionally extra), not {sorted(row[mode])}")
    for name, needs in encoders.items():
        if set(needs) - set(keys):
            raise ConfigError(f"{TABLE}: encoder {name!r} needs unknown stages {sorted(set(needs) - set(keys))}")
    return data


def stage_keys() -> tuple[str, ...]:
    return tuple(row["key"] for row in table()["stages"])


def label(key: str) -> str:
    """The stage's row in the report (stages.yaml's ``label``)."""
    row = next((r for r in table()["stages"] if r["key"] == key), None)
    if row is None or not row.get("label"):
        raise ConfigError(f"{TABLE}: stage {key!r} has no report label")
    return row["label"]


def shared_keys() -> tuple[str, ...]:
    """Stages run once for every fusion type (the streams know nothing of the fusion blocks)."""
    return tuple(table()["shared"])


def sizes(key: str, quick: bool) -> tuple[tuple[str, ...], float]:
    """A stage's size overrides and its estimate (seconds on 2 idle cores) for the full run or ``--quick``."""
    row = next(r for r in table()["stages"] if r["key"] == key)
    s = row["quick" if quick else "full"]
    overrides = (f"data.size={s['scenes']}", f"data.eval_size={s['eval_scenes']}", f"train.epochs={s['epochs']}",
                 f"train.batch_size={s['batch']}", f"train.eval_every={s['epochs']}", *s.get("extra", ()))
    return overrides, float(s["estimate_s"])


def check_fusion(fusion: str) -> str:
    if fusion not in FUSIONS:
        raise ConfigError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)} (or 'all')")
    return fusion


def plan(quick: bool, fusion: str, only: tuple[str, ...] | None = None) -> list[Stage]:
    """The stages of one pipeline run for ``fusion``, in the table's order, which respects their inputs
    (``only``: a subset; it must hold every stage its stages need, see :func:`with_inputs`)."""
    check_fusion(fusion)
    data = table()
    keys = stage_keys()
    if only is not None:
        unknown = sorted(set(only) - set(keys))
        if unknown:
            raise ConfigError(f"unknown stage(s) {unknown}; the stages are {', '.join(keys)}")
    stages = []
    for row in data["stages"]:
        key, encoder = row["key"], row["encoder"]
        if only is not None and key not in only:
            continue
        needs = tuple(data["encoders"][encoder])
        missing = [need for need in needs if only is not None and need not in only]
        if missing:
            raise ConfigError(f"stage {key} needs the stage(s) {', '.join(missing)} (its encoder: {encoder})")
        size, estimate = sizes(key, quick)
        overrides = (*data["common"], *(data["quick_common"] if quick else ()), *size, *row.get("overrides", ()),
                     f"model.fusion_type={fusion}")
        stages.append(Stage(key, row["task"], row["recipe"], row["title"], encoder, needs, overrides, estimate,
                            row.get("label"), row.get("curve")))
    return stages


def with_inputs(keys) -> tuple[str, ...]:
    """``keys`` and every stage they need, transitively, in the table's order."""
    data = table()
    needs = {row["key"]: data["encoders"][row["encoder"]] for row in data["stages"]}
    unknown = sorted(set(keys) - set(needs))
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; the stages are {', '.join(needs)}")
    wanted, todo = set(), list(keys)
    while todo:
        key = todo.pop()
        if key not in wanted:
            wanted.add(key)
            todo += needs[key]
    return tuple(k for k in needs if k in wanted)


def encoder_overrides(stage: Stage, checkpoints: dict[str, Path]) -> tuple[str, ...]:
    """The overrides that give ``stage`` its encoder, from the checkpoints of the stages it needs."""
    from avfusion.tasks.unimodal import STREAM_FILE

    missing = [need for need in stage.needs if need not in checkpoints]
    if missing:
        raise ConfigError(f"stage {stage.key} needs the stage(s) {', '.join(missing)} first")
    if stage.encoder == "stage1":
        return (f"model.image_init={checkpoints['unimodal_image'] / STREAM_FILE}",
                f"model.audio_init={checkpoints['unimodal_audio'] / STREAM_FILE}")
    if stage.encoder == "avmae":
        return (f"model.pretrained={checkpoints['pretrain']}",)
    return ()


def priorities(stages: list[Stage]) -> dict[str, float]:
    """Each stage's estimate plus the longest chain of estimates of the stages waiting on it (its
    critical path): the scheduler starts the ready stage with the largest first."""
    by_key = {s.key: s for s in stages}
    out: dict[str, float] = {}

    def level(key: str) -> float:
        if key not in out:
            after = [level(s.key) for s in stages if key in s.needs]
            out[key] = by_key[key].estimate_s + max(after, default=0.0)
        return out[key]

    for s in stages:
        level(s.key)
    return out


def makespan(stages: list[Stage], jobs: int, done: tuple[str, ...] = ()) -> float:
    """Seconds the stages take by their estimates when ``jobs`` run at once, scheduled as
    :func:`avfusion_avdigits.pipeline.run_pipeline` does: whenever a slot is free, the ready stage (every
    stage it needs finished) with the longest critical path starts; a slot with nothing ready waits for
    the next stage to finish. ``done``: stages already finished. The plan line's and the progress
    display's prior."""
    prio = priorities(stages)
    end = {key: 0.0 for key in done}  # when each started stage finishes
    pending = [s for s in stages if s.key not in end]
    free = [0.0] * max(1, jobs)

    def ready_at(stage: Stage, now: float) -> bool:
        return all(n not in prio and n not in end or end.get(n, math.inf) <= now for n in stage.needs)

    while pending:
        slot = min(range(len(free)), key=free.__getitem__)
        now = free[slot]
        ready = [s for s in pending if ready_at(s, now)]
        if not ready:
            later = [t for t in end.values() if t > now]
            if not later:
                raise ConfigError(f"stages {[s.key for s in pending]} wait on each other")
            free[slot] = min(later)
            continue
        stage = max(ready, key=lambda s: prio[s.key])
        end[stage.key] = free[slot] = now + stage.estimate_s
        pending.remove(stage)
    return max(end.values(), default=0.0)
