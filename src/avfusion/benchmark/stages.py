"""The stages of the AV-Digits benchmark as data: which task, which recipe, which overrides.

Every stage trains through the one engine from a recipe of ``configs/avdigits`` plus dotted
overrides: :data:`COMMON`, the stage's own sizes (:data:`FULL` or :data:`QUICK`: scenes, epochs,
batch), and the fusion type. The encoder and inputs are not among them: every AV-Digits recipe takes
them from ``configs/avdigits/encoder_tiny.yaml`` (``defaults: encoder_tiny``), the one place that says
what the benchmark's encoder is, so that the pretrained encoder loads into every downstream model.
``estimate_s`` is the wall time a stage took on 2 idle CPU cores; the progress display scales it by
how the finished stages compared with their estimates.
"""
from __future__ import annotations

from dataclasses import dataclass

from avfusion.errors import ConfigError

FUSIONS = ("factorized", "dense", "none")

#: Every stage: no TensorBoard files, and a log record every 5 steps for the training curves.
COMMON = ("train.tensorboard=false", "train.log_every=5", "train.seed=0")


@dataclass(frozen=True)
class Stage:
    """One training run of the pipeline.

    Attributes:
        key: the stage's name in reports, run directories and checkpoints.
        task: the task of ``avfusion.tasks.registry``.
        recipe: file name in ``configs/avdigits``.
        title: what the stage does, for the progress display.
        pretrained: start from the pretraining stage's encoder (``model.pretrained``).
        overrides: COMMON, the stage's own overrides, then the fusion type.
        estimate_s: seconds on 2 idle CPU cores (the progress display's prior).
    """

    key: str
    task: str
    recipe: str
    title: str
    pretrained: bool
    overrides: tuple[str, ...]
    estimate_s: float


# (key, task, recipe, title, pretrained)
_PIPELINE = (
    ("pretrain", "pretrain", "pretrain_tiny.yaml", "masked audio-visual pretraining (no labels)", False),
    ("linear_probe", "classify", "classify_linprobe.yaml", "classification: linear probe", True),
    ("linear_probe_random_init", "classify", "classify_linprobe.yaml",
     "classification: linear probe of a random encoder", False),
    ("finetune", "classify", "classify_finetune.yaml", "classification: fine-tuning", True),
    ("localize", "localize", "localize.yaml", "localisation: contrastive head + attention read-out", True),
    ("separate", "separate", "separate.yaml", "separation, guided by the image", True),
    ("separate_audio_only", "separate", "separate.yaml", "separation baseline: audio only", True),
    ("segment", "segment", "segment.yaml", "segmentation of the speaking digit", True),
)

#: Default sizes (the full run): (overrides, estimate in seconds on 2 idle cores).
FULL: dict[str, tuple[tuple[str, ...], float]] = {
    "pretrain": (("data.size=4000", "data.eval_size=500", "train.epochs=6", "train.batch_size=32",
                  "train.eval_every=6"), 240.0),
    "linear_probe": (("data.size=2000", "data.eval_size=500", "train.epochs=6", "train.batch_size=64",
                      "train.eval_every=6"), 50.0),
    "linear_probe_random_init": (("data.size=2000", "data.eval_size=500", "train.epochs=6", "train.batch_size=64",
                                  "train.eval_every=6"), 50.0),
    "finetune": (("data.size=3500", "data.eval_size=500", "train.epochs=4", "train.batch_size=32",
                  "train.eval_every=4"), 130.0),
    "localize": (("data.size=1000", "data.eval_size=500", "train.epochs=3", "train.batch_size=32",
                  "train.eval_every=3"), 90.0),
    # separate: ~180 CPU-s on 1 thread (training 336 steps of 8 mixtures, 100 test mixtures scored twice);
    # the audio-only baseline gets fewer mixtures (~125 CPU-s): with one mask for both sources it cannot
    # beat the mixture (SDRi <= ~0 dB) however long it trains.
    "separate": (("data.size=900", "data.eval_size=100", "train.epochs=3", "train.batch_size=8",
                  "train.eval_every=3"), 110.0),
    "separate_audio_only": (("data.size=600", "data.eval_size=100", "train.epochs=3", "train.batch_size=8",
                             "train.eval_every=3", "separate.condition=zeros", "separate.baselines=[]"), 75.0),
    "segment": (("data.size=440", "data.eval_size=200", "train.epochs=2", "train.batch_size=8",
                 "train.eval_every=2"), 200.0),
}

#: ``--quick``: the same pipeline, small enough for a test (about 2-3 minutes on 2 idle cores).
QUICK: dict[str, tuple[tuple[str, ...], float]] = {
    "pretrain": (("data.size=256", "data.eval_size=100", "train.epochs=2", "train.batch_size=32",
                  "train.warmup_epochs=0.3", "train.eval_every=1"), 12.0),
    "linear_probe": (("data.size=240", "data.eval_size=200", "train.epochs=4", "train.batch_size=32",
                      "train.warmup_epochs=0.5", "train.eval_every=4"), 6.0),
    "linear_probe_random_init": (("data.size=240", "data.eval_size=200", "train.epochs=4", "train.batch_size=32",
                                  "train.warmup_epochs=0.5", "train.eval_every=4"), 6.0),
    # fine-tuning needs ~100 steps to leave chance clearly at this size (14 steps stay at ~0.1, 60 reach ~0.13)
    "finetune": (("data.size=640", "data.eval_size=100", "train.epochs=5", "train.batch_size=32",
                  "train.eval_every=5"), 37.0),
    "localize": (("data.size=160", "data.eval_size=100", "train.epochs=1", "train.batch_size=16",
                  "train.warmup_epochs=0.2", "train.eval_every=1", "localize.negatives=3"), 10.0),
    "separate": (("data.size=160", "data.eval_size=40", "train.epochs=1", "train.batch_size=16",
                  "train.warmup_epochs=0.2", "train.eval_every=1"), 12.0),
    "separate_audio_only": (("data.size=160", "data.eval_size=40", "train.epochs=1", "train.batch_size=16",
                             "train.warmup_epochs=0.2", "train.eval_every=1", "separate.condition=zeros",
                             "separate.baselines=[]"), 12.0),
    "segment": (("data.size=48", "data.eval_size=40", "train.epochs=1", "train.batch_size=8",
                 "train.warmup_epochs=0.2", "train.eval_every=1"), 12.0),
}


def check_fusion(fusion: str) -> str:
    if fusion not in FUSIONS:
        raise ConfigError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)} (or 'all')")
    return fusion


def plan(quick: bool, fusion: str, only: tuple[str, ...] | None = None) -> list[Stage]:
    """The stages of one pipeline run for ``fusion``, in order (``only``: a subset, for tests)."""
    check_fusion(fusion)
    sizes = QUICK if quick else FULL
    keys = [row[0] for row in _PIPELINE]
    if only is not None:
        unknown = sorted(set(only) - set(keys))
        if unknown:
            raise ConfigError(f"unknown stage(s) {unknown}; the stages are {', '.join(keys)}")
        if "pretrain" not in only:
            raise ConfigError("every benchmark run starts with the pretrain stage")
    stages = []
    for key, task, recipe, title, pretrained in _PIPELINE:
        if only is not None and key not in only:
            continue
        own, estimate = sizes[key]
        overrides = (*COMMON, *own, f"model.fusion_type={fusion}")
        stages.append(Stage(key, task, recipe, title, pretrained, overrides, estimate))
    return stages


def stage_keys() -> tuple[str, ...]:
    return tuple(row[0] for row in _PIPELINE)
