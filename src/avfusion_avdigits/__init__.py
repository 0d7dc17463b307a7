"""The AV-Digits benchmark: the whole method end to end on the embedded AV-Digits data (stage-1 streams,
masked audio-visual pretraining, four downstream tasks beside their baselines, the fusion ablation), with
a report and figures. It sits beside the ``avfusion`` library, uses it as any user does, and adds the
``avfusion benchmark`` command (entry point); the library never imports it. Its recipes (``recipes/``)
and stage table (``stages.yaml``) ship inside this package. See docs/avdigits.md."""
from avfusion_avdigits.pipeline import default_jobs, run_benchmark
from avfusion_avdigits.stages import FUSIONS

__all__ = ["FUSIONS", "default_jobs", "run_benchmark"]
