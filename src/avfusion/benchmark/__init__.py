"""Benchmarks that run the whole method end to end: AV-Digits (pretraining, four downstream tasks,
baselines, the fusion ablation), with a report and figures. See docs/avdigits.md."""
from avfusion.benchmark.avdigits import default_jobs, run_benchmark
from avfusion.benchmark.stages import FUSIONS

__all__ = ["FUSIONS", "default_jobs", "run_benchmark"]
