"""The stages of the AV-Digits benchmark as data: which task, which recipe, where the encoder comes from.

The paper's three stages, at AV-Digits scale:

1. unimodal initialisation (the counterpart of MAE on ImageNet / AudioMAE on AudioSet): each stream on
   its own modality (``unimodal_image``, ``unimodal_audio``);
2. masked audio-visual pretraining (AV-MAE) of the early-fusion encoder from those streams (``pretrain``);
3. the downstream tasks from the AV-MAE encoder, each beside the same recipe on the stage-1 encoder
   without AV-MAE (``*_stage1``: the paper's question, does AV-MAE add to the unimodal initialisation?)
   and, for the linear probe, on a random encoder.

Every stage trains through the one engine from a recipe of ``configs/avdigits`` plus dotted
overrides: :data:`COMMON` (and :data:`QUICK_COMMON` for ``--quick``), the stage's own sizes
(:data:`FULL` or :data:`QUICK`: scenes, epochs, batch), its own recipe changes, and the fusion type.
Where the encoder's weights come from is the stage's ``encoder`` (:data:`ENCODERS`), turned into
overrides once its inputs exist (:func:`encoder_overrides`). The encoder's architecture is not among
the overrides: every AV-Digits recipe takes it from ``configs/avdigits/encoder_tiny.yaml`` (``--quick``
only draws smaller canvases). ``estimate_s`` is the wall time a stage took on 2 idle CPU cores, one
stage per core; the progress display scales it by how the finished stages compared with their
estimates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from avfusion.errors import ConfigError

FUSIONS = ("factorized", "dense", "none")

#: Every stage: no TensorBoard files, and a log record every 5 steps for the training curves.
COMMON = ("train.tensorboard=false", "train.log_every=5", "train.seed=0")

#: Where a stage's encoder weights come from -> the stages that must have finished first.
ENCODERS: dict[str, tuple[str, ...]] = {
    "random": (),                                    # the recipe's initialisation
    "stage1": ("unimodal_image", "unimodal_audio"),  # model.image_init / model.audio_init: stage-1 streams
    "avmae": ("pretrain",),                          # model.pretrained: the AV-MAE encoder
}
#: Stages run once for every fusion type (the streams know nothing of the fusion blocks).
SHARED = ("unimodal_image", "unimodal_audio")


@dataclass(frozen=True)
class Stage:
    """One training run of the pipeline.

    Attributes:
        key: the stage's name in reports, run directories and checkpoints.
        task: the task of ``avfusion.tasks.registry``.
        recipe: file name in ``configs/avdigits``.
        title: what the stage does, for the progress display.
        encoder: where the encoder's weights come from (a key of :data:`ENCODERS`).
        overrides: COMMON, the stage's sizes and own changes, then the fusion type.
        estimate_s: seconds on 2 idle CPU cores (the progress display's prior).
    """

    key: str
    task: str
    recipe: str
    title: str
    encoder: str
    overrides: tuple[str, ...]
    estimate_s: float

    @property
    def needs(self) -> tuple[str, ...]:
        return ENCODERS[self.encoder]


# (key, task, recipe, title, encoder, the stage's own recipe changes)
_PIPELINE: tuple[tuple[str, str, str, str, str, tuple[str, ...]], ...] = (
    ("unimodal_image", "unimodal", "unimodal_image.yaml", "stage 1: the image stream on handwritten digits alone",
     "random", ()),
    ("unimodal_audio", "unimodal", "unimodal_audio.yaml", "stage 1: the audio stream on spoken digits alone",
     "random", ()),
    ("pretrain", "pretrain", "pretrain_tiny.yaml", "stage 2: masked audio-visual pretraining (no labels)",
     "stage1", ()),
    ("linear_probe", "classify", "classify_linprobe.yaml", "classification: linear probe", "avmae", ()),
    ("linear_probe_stage1", "classify", "classify_linprobe.yaml",
     "classification: linear probe of the stage-1 encoder (no AV-MAE)", "stage1", ()),
    ("linear_probe_random_init", "classify", "classify_linprobe.yaml",
     "classification: linear probe of a random encoder", "random", ()),
    ("finetune", "classify", "classify_finetune.yaml", "classification: fine-tuning", "avmae", ()),
    ("localize", "localize", "localize.yaml", "localisation: contrastive head + attention read-out", "avmae", ()),
    ("localize_stage1", "localize", "localize.yaml", "localisation on the stage-1 encoder (no AV-MAE)", "stage1", ()),
    ("separate", "separate", "separate.yaml", "separation, guided by the image", "avmae", ()),
    ("separate_stage1", "separate", "separate.yaml", "separation on the stage-1 encoder (no AV-MAE)", "stage1",
     ("separate.baselines=[]",)),
    ("separate_audio_only", "separate", "separate.yaml", "separation baseline: audio only", "avmae",
     ("separate.condition=zeros", "separate.baselines=[]")),
    ("segment", "segment", "segment.yaml", "segmentation of the speaking digit", "avmae", ()),
    ("segment_stage1", "segment", "segment.yaml", "segmentation on the stage-1 encoder (no AV-MAE)", "stage1", ()),
)


def _sizes(scenes: int, eval_scenes: int, epochs: int, batch: int, *extra: str) -> tuple[str, ...]:
    return (f"data.size={scenes}", f"data.eval_size={eval_scenes}", f"train.epochs={epochs}",
            f"train.batch_size={batch}", f"train.eval_every={epochs}", *extra)


_PROBE_FULL = (_sizes(2000, 500, 6, 64), 42.0)
_LOCALIZE_FULL = (_sizes(8000, 500, 20, 128), 98.0)  # the heads on cached features (localize.yaml)
# Separation: the temporal head on the frozen encoder's cached features, 500 steps of 32 mixtures over the
# same 1,000 (separate.yaml); model, stage 1 and audio-only alike
_SEPARATE_FULL = (_sizes(1000, 100, 16, 32), 100.0)  # 169-200 CPU-s on the 1.7x slower VM of 2026-12-07
_SEGMENT_FULL = (_sizes(4000, 200, 2, 16), 231.0)

#: Default sizes (the full run): stage -> (overrides, estimate in seconds on 2 idle cores, two stages at a
#: time: the wall times of the full runs of 12ab5df and, for segmentation and separation, 009777b, 2026-12-06;
#: the image stream's: its 600 steps at peak lr 3e-3 beside another run, 2026-12-07).
FULL: dict[str, tuple[tuple[str, ...], float]] = {
    "unimodal_image": (_sizes(3840, 500, 10, 64), 160.0),
    "unimodal_audio": (_sizes(3840, 500, 5, 64), 40.0),
    "pretrain": (_sizes(4000, 500, 3, 32), 119.0),
    "linear_probe": _PROBE_FULL,
    "linear_probe_stage1": _PROBE_FULL,
    "linear_probe_random_init": _PROBE_FULL,
    "finetune": (_sizes(3500, 500, 4, 32), 119.0),
    "localize": _LOCALIZE_FULL,
    "localize_stage1": _LOCALIZE_FULL,
    "separate": _SEPARATE_FULL,
    "separate_stage1": _SEPARATE_FULL,
    "separate_audio_only": _SEPARATE_FULL,
    "segment": _SEGMENT_FULL,
    "segment_stage1": _SEGMENT_FULL,
}

#: ``--quick`` draws 64 x 64 canvases (4 x 4 patches; the full run: 96, 6 x 6) for every stage: the same
#: encoder on fewer image tokens, half the cost of an image step, and the per-patch objective learns faster
#: per step (image stream, 500 steps of 64 at the recipe's peak lr 3e-3, share of digit tokens named right:
#: 64 px 0.78 / 0.88 / 0.89 after 200 / 300 / 500 steps in 66 s; 96 px 0.66 / 0.84 / 0.88 in 130 s,
#: docs/avdigits.md).
QUICK_COMMON = ("data.image_size=64",)

_PROBE_QUICK = (_sizes(240, 200, 4, 32, "train.warmup_epochs=0.5"), 4.0)
# The localiser's heads on 3,000 cached scenes: on a quick encoder (300-step image stream) 1,000 / 2,000 /
# 3,000 scenes give AP50 0.58 / 0.65 / 0.72 on 100 test scenes, 3,000 / 5,000 give 0.675 / 0.685 on 200 (a
# random visible digit: 0.64 on both)
_LOCALIZE_QUICK = (_sizes(3000, 200, 20, 128), 27.0)
_SEPARATE_QUICK = (_sizes(400, 40, 8, 32), 25.0)  # 100 steps of 32; 37-42 s on the slower VM
# 80 steps of 8 outline the digits well enough to beat their boxes (40 test scenes: fg IoU 0.46 against 0.29);
# choosing the speaking digit takes the full run's 500 of 16
_SEGMENT_QUICK = (_sizes(640, 40, 1, 8, "train.warmup_epochs=0.2"), 14.0)

#: ``--quick``: the same pipeline, small enough for a test (about 2.5 minutes on 2 idle cores). Estimates: the
#: wall times of a --quick run on 2 idle cores, 2026-12-07.
QUICK: dict[str, tuple[tuple[str, ...], float]] = {
    # the localiser needs an image stream that names the digit under each patch: with 0.84 of the digit tokens
    # (300 steps) the stage-1 localiser reaches AP50 0.71, with 0.89 (500 steps) 0.80 (3,000 scenes, 200 tests)
    "unimodal_image": (_sizes(3200, 200, 10, 64), 70.0),
    "unimodal_audio": (_sizes(1600, 200, 8, 64, "train.warmup_epochs=1"), 32.0),  # 200 steps, beside the image
    # 16 steps at the full run's gentle lr (peak 1.5e-5) leave the new decoder where it started (loss
    # 5.57 -> 5.12): the quick run pretrains at 10x it, enough to see reconstruction improve
    "pretrain": (_sizes(256, 100, 2, 32, "train.warmup_epochs=0.3", "train.base_lr=1.2e-3"), 5.0),
    "linear_probe": _PROBE_QUICK,
    "linear_probe_stage1": _PROBE_QUICK,
    "linear_probe_random_init": _PROBE_QUICK,
    "finetune": (_sizes(640, 100, 5, 32), 22.0),  # 100 steps: joint top-1 0.93
    "localize": _LOCALIZE_QUICK,
    "localize_stage1": _LOCALIZE_QUICK,
    "separate": _SEPARATE_QUICK,
    "separate_stage1": _SEPARATE_QUICK,
    "separate_audio_only": _SEPARATE_QUICK,
    "segment": _SEGMENT_QUICK,
    "segment_stage1": _SEGMENT_QUICK,
}


def check_fusion(fusion: str) -> str:
    if fusion not in FUSIONS:
        raise ConfigError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)} (or 'all')")
    return fusion


def plan(quick: bool, fusion: str, only: tuple[str, ...] | None = None) -> list[Stage]:
    """The stages of one pipeline run for ``fusion``, in an order that respects their inputs (``only``:
    a subset, for tests; it must hold every stage its stages need)."""
    check_fusion(fusion)
    sizes = QUICK if quick else FULL
    keys = stage_keys()
    if only is not None:
        unknown = sorted(set(only) - set(keys))
        if unknown:
            raise ConfigError(f"unknown stage(s) {unknown}; the stages are {', '.join(keys)}")
    stages = []
    for key, task, recipe, title, encoder, own in _PIPELINE:
        if only is not None and key not in only:
            continue
        missing = [need for need in ENCODERS[encoder] if only is not None and need not in only]
        if missing:
            raise ConfigError(f"stage {key} needs the stage(s) {', '.join(missing)} (its encoder: {encoder})")
        size, estimate = sizes[key]
        overrides = (*COMMON, *(QUICK_COMMON if quick else ()), *size, *own, f"model.fusion_type={fusion}")
        stages.append(Stage(key, task, recipe, title, encoder, overrides, estimate))
    return stages


def stage_keys() -> tuple[str, ...]:
    return tuple(row[0] for row in _PIPELINE)


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
    :func:`avfusion.benchmark.avdigits.run_pipeline` does: whenever a slot is free, the ready stage (every
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
