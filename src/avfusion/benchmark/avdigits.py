"""The AV-Digits benchmark: pretrain a tiny early-fusion model, then every downstream task, in one call.

    from avfusion.benchmark import run_benchmark
    result = run_benchmark("runs/avdigits", quick=False, fusions=("factorized",))

Each stage (:mod:`avfusion.benchmark.stages`) trains through ``avfusion.engine.run_training`` exactly as
``avfusion pretrain`` / ``avfusion train`` do, and keeps the task's evaluation report. Layout of the
output directory (per fusion type; the first fusion type's at the top, the others under
``ablation/<fusion>/``)::

    runs/<stage>/          config.yaml, metrics.jsonl, evaluation.json of each training run
    checkpoints/<stage>/   final weights (save_pretrained directories)
    figures/               pictures (:mod:`avfusion.benchmark.figures`)
    report.md, report.json (:mod:`avfusion.benchmark.report`)
"""
from __future__ import annotations

import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avfusion.benchmark.progress import StageProgress
from avfusion.benchmark.stages import Stage, check_fusion, plan
from avfusion.errors import ConfigError

log = logging.getLogger(__name__)

FIGURE_ESTIMATE_S = 15.0
OUTPUT_PARTS = ("runs", "checkpoints", "figures", "ablation", "report.md", "report.json")


@dataclass
class StageResult:
    """What one stage left behind."""

    stage: Stage
    run_dir: Path
    checkpoint: Path
    seconds: float
    overrides: tuple[str, ...]
    config: dict[str, Any]
    report: Any | None  # EvaluationReport (downstream stages)
    train_metrics: dict[str, float] = field(default_factory=dict)  # the engine's last evaluation
    steps: int = 0
    cpu_seconds: float = 0.0  # CPU time of this process (all threads) during the stage


@dataclass
class FusionRun:
    """Every stage of the pipeline for one fusion type."""

    fusion: str
    root: Path
    stages: dict[str, StageResult] = field(default_factory=dict)


def find_configs(configs: str | os.PathLike | None = None) -> Path:
    """The ``configs/avdigits`` recipes: ``configs`` if given, else the ones of this source checkout."""
    if configs is not None:
        path = Path(configs)
    else:
        path = Path(__file__).resolve().parents[3] / "configs" / "avdigits"
    if not (path / "pretrain_tiny.yaml").is_file():
        raise ConfigError(f"the AV-Digits recipes are not at {path}; run from a source checkout of avfusion or "
                          "pass --configs DIR (the directory holding pretrain_tiny.yaml, classify_linprobe.yaml, ...)")
    return path


def prepare_output(output: Path, overwrite: bool) -> None:
    """Refuse to mix two runs in one directory unless ``overwrite`` (which removes the earlier run's outputs)."""
    present = [name for name in OUTPUT_PARTS if (output / name).exists()]
    if present and not overwrite:
        raise ConfigError(f"{output} already holds a benchmark run ({', '.join(present)}); choose another "
                          "--output or pass --overwrite")
    for name in present:
        target = output / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    output.mkdir(parents=True, exist_ok=True)


def machine() -> dict[str, Any]:
    """Where the numbers were measured."""
    import torch

    from avfusion import __version__

    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                            "cuda": torch.cuda.is_available(), "avfusion": __version__}
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    return info


def run_stage(stage: Stage, configs: Path, root: Path, pretrained: Path | None, progress: bool) -> StageResult:
    """Train one stage through the engine; move its final weights to ``root/checkpoints/<stage>``."""
    from avfusion.engine import load_config, run_training, to_dict
    from avfusion.tasks.registry import get_recipe, get_task

    overrides = list(stage.overrides)
    if stage.pretrained:
        if pretrained is None:
            raise ConfigError(f"stage {stage.key} needs the pretrained encoder; run the pretrain stage first")
        overrides.append(f"model.pretrained={pretrained}")
    overrides.append(f"train.progress={'true' if progress else 'false'}")
    cfg = load_config(get_recipe(stage.task), configs / stage.recipe, overrides)
    run_dir, checkpoint = root / "runs" / stage.key, root / "checkpoints" / stage.key
    start, cpu = time.perf_counter(), time.process_time()
    task = get_task(stage.task)()
    result = run_training(task, cfg, run_dir, resume=None)
    seconds = time.perf_counter() - start
    report = getattr(task, "last_report", None)
    if report is not None:
        report.meta.update(step=result.step, stage=stage.key)
        report.write(run_dir)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    if checkpoint.exists():
        shutil.rmtree(checkpoint)
    shutil.move(str(result.final_dir), str(checkpoint))
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # training states; the weights are in checkpoint
    return StageResult(stage, run_dir, checkpoint, seconds, tuple(overrides), to_dict(cfg), report,
                       dict(result.eval_metrics), result.step, time.process_time() - cpu)


def default_jobs() -> int:
    """One downstream stage per CPU, at most as many as there are downstream stages."""
    from avfusion.benchmark.stages import stage_keys

    return max(1, min(os.cpu_count() or 1, len(stage_keys()) - 1))


def _worker_init(threads: int, level: int) -> None:
    """A stage worker process: its share of the CPU threads, and the parent's log level."""
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def run_parallel(stages: list[Stage], configs: Path, root: Path, pretrained: Path, jobs: int,
                 tracker: StageProgress, prefix: str) -> dict[str, StageResult]:
    """Run independent ``stages`` ``jobs`` at a time, each in a worker process with cpu_count // jobs threads;
    longest (by estimate) first. The first failure stops the rest and is raised."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // jobs)
    queue = sorted(stages, key=lambda s: -s.estimate_s)
    done: dict[str, StageResult] = {}
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch threads
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init,
                             initargs=(threads, logging.getLogger().getEffectiveLevel())) as pool:
        pending = {}
        try:
            while queue or pending:
                while queue and len(pending) < jobs:
                    stage = queue.pop(0)
                    tracker.start(f"{prefix}/{stage.key}", stage.title)
                    pending[pool.submit(run_stage, stage, configs, root, pretrained, False)] = stage
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    stage = pending.pop(future)
                    result = future.result()
                    result.seconds = tracker.finish(f"{prefix}/{stage.key}")
                    done[stage.key] = result
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return done


def run_benchmark(output: str | os.PathLike, *, quick: bool = False, fusions: tuple[str, ...] = ("factorized",),
                  configs: str | os.PathLike | None = None, overwrite: bool = False, progress: bool = True,
                  figures: bool = True, jobs: int = 1, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Run the pipeline for every fusion type in ``fusions`` and write the report; returns report.json's content.

    ``jobs`` > 1 runs the downstream stages (independent once the encoder is pretrained) that many at a time in
    worker processes; 1 runs everything in this process. ``only`` restricts the stages (tests);
    ``figures=False`` skips the pictures.
    """
    from avfusion.benchmark.report import build_report, write_report

    fusions = tuple(check_fusion(f) for f in fusions)
    if not fusions or len(set(fusions)) != len(fusions):
        raise ConfigError(f"fusions must be distinct and at least one, got {fusions}")
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    out = Path(output)
    recipes = find_configs(configs)
    prepare_output(out, overwrite)
    at_start, cpu_start = machine(), time.process_time()
    plans = {f: plan(quick, f, only) for f in fusions}
    estimates = {f"{f}/{s.key}": s.estimate_s for f in fusions for s in plans[f]}
    if figures:
        estimates["figures"] = FIGURE_ESTIMATE_S
    tracker = StageProgress(estimates, jobs=jobs)
    log.info("AV-Digits benchmark (%s, fusion %s) into %s: %d stages, about %s on 2 idle cores, %d at a time",
             "quick" if quick else "full", "+".join(fusions), out, len(estimates),
             f"{sum(estimates.values()) / 60:.1f} min", jobs)
    runs: list[FusionRun] = []
    worker_cpu = 0.0
    for i, fusion in enumerate(fusions):
        run = FusionRun(fusion, out if i == 0 else out / "ablation" / fusion)
        pretrain, downstream = plans[fusion][0], plans[fusion][1:]
        tracker.start(f"{fusion}/pretrain", f"{pretrain.title} [{fusion} fusion]")
        run.stages["pretrain"] = run_stage(pretrain, recipes, run.root, None, progress)
        run.stages["pretrain"].seconds = tracker.finish(f"{fusion}/pretrain")
        encoder = run.stages["pretrain"].checkpoint
        if jobs > 1 and len(downstream) > 1:
            results = run_parallel(downstream, recipes, run.root, encoder, jobs, tracker, fusion)
            worker_cpu += sum(r.cpu_seconds for r in results.values())
            run.stages.update((s.key, results[s.key]) for s in downstream)  # in plan order
        else:
            for stage in downstream:
                tracker.start(f"{fusion}/{stage.key}", f"{stage.title} [{fusion} fusion]")
                run.stages[stage.key] = run_stage(stage, recipes, run.root, encoder, progress)
                run.stages[stage.key].seconds = tracker.finish(f"{fusion}/{stage.key}")
        runs.append(run)
    figure_files: list[str] = []
    figure_seconds = figure_cpu = 0.0
    if figures:
        from avfusion.benchmark.figures import make_figures
        from avfusion.benchmark.results import sections

        tracker.start("figures", "figures")
        cpu = time.process_time()
        ablation = {r.fusion: sections(r.stages) for r in runs} if len(runs) > 1 else None
        figure_files = make_figures(out, runs, ablation)
        figure_seconds, figure_cpu = tracker.finish("figures"), time.process_time() - cpu
    report = build_report(runs, quick=quick, jobs=jobs, recipes=recipes, machine_start=at_start, machine_end=machine(),
                          total_seconds=time.perf_counter() - tracker.started, figure_seconds=figure_seconds,
                          figure_cpu_seconds=figure_cpu, figure_files=figure_files,
                          cpu_seconds=time.process_time() - cpu_start + worker_cpu)
    write_report(out, report)
    return report
