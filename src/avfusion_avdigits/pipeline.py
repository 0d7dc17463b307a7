"""The AV-Digits benchmark: pretrain a tiny early-fusion model, then every downstream task, in one call.

    from avfusion_avdigits import run_benchmark
    result = run_benchmark("runs/avdigits", quick=False, fusions=("factorized",))

Each stage (:mod:`avfusion_avdigits.stages`) trains through ``avfusion.engine.run_training`` exactly as
``avfusion pretrain`` / ``avfusion train`` do, and keeps the task's evaluation report. Layout of the
output directory (per fusion type; the first fusion type's at the top, the others under
``ablation/<fusion>/``)::

    runs/<stage>/          config.yaml, metrics.jsonl, evaluation.json of each training run
    checkpoints/<stage>/   final weights (save_pretrained directories)
    figures/               pictures (:mod:`avfusion_avdigits.figures`)
    report.md, report.json (:mod:`avfusion_avdigits.report`)
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

from avfusion_avdigits.progress import StageProgress, duration
from avfusion_avdigits.stages import Stage, check_fusion, makespan, plan, shared_keys
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


#: The AV-Digits recipes, shipped inside this package (``configs/avdigits`` of a source checkout links here).
RECIPES = Path(__file__).resolve().with_name("recipes")


def find_configs(configs: str | os.PathLike | None = None) -> Path:
    """The AV-Digits recipes: ``configs`` if given (a directory holding the same files), else the package's."""
    path = RECIPES if configs is None else Path(configs)
    if not (path / "pretrain_tiny.yaml").is_file():
        raise ConfigError(f"the AV-Digits recipes are not at {path}: pass --configs DIR, a directory holding "
                          "pretrain_tiny.yaml, classify_linprobe.yaml, ... (the package's own are in "
                          f"{RECIPES})")
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


def run_stage(stage: Stage, configs: Path, root: Path, checkpoints: dict[str, Path], progress: bool) -> StageResult:
    """Train one stage through the engine, its encoder from ``checkpoints`` (stage key -> final weights of
    the stages it needs); move its final weights to ``root/checkpoints/<stage>``."""
    from avfusion_avdigits.stages import encoder_overrides
    from avfusion.engine import load_config, run_training, to_dict
    from avfusion.tasks.evaluation import EvaluationReport
    from avfusion.tasks.registry import build_task, get_recipe

    overrides = [*stage.overrides, *encoder_overrides(stage, checkpoints)]
    overrides.append(f"train.progress={'true' if progress else 'false'}")
    cfg = load_config(get_recipe(stage.task), configs / stage.recipe, overrides)
    run_dir, checkpoint = root / "runs" / stage.key, root / "checkpoints" / stage.key
    start, cpu = time.perf_counter(), time.process_time()
    result = run_training(build_task(stage.task, cfg), run_dir, resume=None)
    seconds = time.perf_counter() - start
    # the tasks that evaluate with a report table (not the pretraining monitor's plain numbers)
    report = result.eval_report if isinstance(result.eval_report, EvaluationReport) else None
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


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the stage workers)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def default_jobs() -> int:
    """One stage per CPU, at most two (the pipeline's widest useful parallelism on a laptop)."""
    return max(1, min(os.cpu_count() or 1, 2))


def _worker_init(threads: int, level: int) -> None:
    """A stage worker process: its share of the CPU threads, and the parent's log level."""
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def run_pipeline(stages: list[Stage], configs: Path, root: Path, jobs: int, tracker: StageProgress, prefix: str,
                 done: dict[str, StageResult] | None = None, progress: bool = True) -> dict[str, StageResult]:
    """Run ``stages`` as soon as the stages they need have finished, ``jobs`` at a time, the one with the
    longest critical path first (:func:`avfusion_avdigits.stages.priorities`). ``done``: results of
    stages already run (e.g. stage 1, shared by every fusion type). ``jobs`` 1 runs in this process
    (with the engine's step bars); more run in worker processes with cpu_count // jobs threads each.
    The first failure stops the rest and is raised."""
    from avfusion_avdigits.stages import priorities

    results: dict[str, StageResult] = dict(done or {})
    prio = priorities(stages)
    pending = [s for s in stages if s.key not in results]

    def ready() -> list[Stage]:
        return sorted((s for s in pending if all(n in results for n in s.needs)), key=lambda s: -prio[s.key])

    def stuck() -> ConfigError:
        return ConfigError(f"stages {[s.key for s in pending]} wait on stages that are not planned")

    def checkpoints() -> dict[str, Path]:
        return {k: r.checkpoint for k, r in results.items()}

    if jobs == 1:
        while pending:
            candidates = ready()
            if not candidates:
                raise stuck()
            stage = candidates[0]
            pending.remove(stage)
            tracker.start(f"{prefix}/{stage.key}", stage.title)
            results[stage.key] = run_stage(stage, configs, root, checkpoints(), progress)
            results[stage.key].seconds = tracker.finish(f"{prefix}/{stage.key}")
        return results

    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch threads
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init,
                             initargs=(threads, logging.getLogger().getEffectiveLevel())) as pool:
        running: dict[Any, Stage] = {}
        try:
            while pending or running:
                for stage in ready():
                    if len(running) >= jobs:
                        break
                    pending.remove(stage)
                    tracker.start(f"{prefix}/{stage.key}", stage.title)
                    running[pool.submit(run_stage, stage, configs, root, checkpoints(), False)] = stage
                if not running:
                    raise stuck()
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    stage = running.pop(future)
                    result = future.result()
                    result.seconds = tracker.finish(f"{prefix}/{stage.key}")
                    results[stage.key] = result
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return results


def run_benchmark(output: str | os.PathLike, *, quick: bool = False, fusions: tuple[str, ...] = ("factorized",),
                  configs: str | os.PathLike | None = None, overwrite: bool = False, progress: bool = True,
                  figures: bool = True, jobs: int = 1, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Run the pipeline for every fusion type in ``fusions`` and write the report; returns report.json's content.

    ``jobs`` > 1 runs the stages that many at a time in worker processes, each as soon as the stages it
    needs have finished (stage 1 -> AV-MAE -> downstream; the stage-1 comparisons beside AV-MAE); 1 runs
    everything in this process, in the same order. ``only`` restricts the stages (tests);
    ``figures=False`` skips the pictures.
    """
    from avfusion_avdigits.report import build_report, write_report

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
    estimates = {f"{f}/{s.key}": s.estimate_s for i, f in enumerate(fusions) for s in plans[f]
                 if i == 0 or s.key not in shared_keys()}
    if figures:
        estimates["figures"] = FIGURE_ESTIMATE_S
    tracker = StageProgress(estimates, jobs=jobs, total=sum(makespan(plans[f], jobs, () if i == 0 else shared_keys())
                                                            for i, f in enumerate(fusions))
                            + (FIGURE_ESTIMATE_S if figures else 0.0))
    log.info("AV-Digits benchmark (%s, fusion %s) into %s: %d stages, %d at a time, about %s on 2 idle cores",
             "quick" if quick else "full", "+".join(fusions), out, len(estimates), jobs,
             duration(tracker.remaining()))
    runs: list[FusionRun] = []
    cpu_before = _children_cpu()
    for i, fusion in enumerate(fusions):
        run = FusionRun(fusion, out if i == 0 else out / "ablation" / fusion)
        shared = {k: r for k, r in runs[0].stages.items() if k in shared_keys()} if runs else {}
        results = run_pipeline(plans[fusion], recipes, run.root, jobs, tracker, fusion, shared, progress)
        run.stages.update((s.key, results[s.key]) for s in plans[fusion])  # in plan order
        runs.append(run)
    worker_cpu = _children_cpu() - cpu_before if jobs > 1 else 0.0
    figure_files: list[str] = []
    figure_seconds = figure_cpu = 0.0
    if figures:
        from avfusion_avdigits.figures import make_figures
        from avfusion_avdigits.results import ablation as ablation_table

        tracker.start("figures", "figures")
        cpu = time.process_time()
        ablation = (ablation_table({r.fusion: {k: s.report for k, s in r.stages.items()} for r in runs})
                    if len(runs) > 1 else None)
        figure_files = make_figures(out, runs, ablation)
        figure_seconds, figure_cpu = tracker.finish("figures"), time.process_time() - cpu
    report = build_report(runs, quick=quick, jobs=jobs, recipes=recipes, machine_start=at_start, machine_end=machine(),
                          total_seconds=time.perf_counter() - tracker.started, figure_seconds=figure_seconds,
                          figure_cpu_seconds=figure_cpu, figure_files=figure_files,
                          cpu_seconds=time.process_time() - cpu_start + worker_cpu)
    write_report(out, report)
    return report
