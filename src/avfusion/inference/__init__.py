"""Video in, predictions and pictures out: `Pipeline` runs any checkpoint over whole media files.

    import avfusion
    pipe = avfusion.Pipeline.from_pretrained("runs/localize/final")
    result = pipe.localize("street.mp4")        # heatmap per window, peak (x, y) in frame pixels

`avfusion.inference.render` draws the pictures and videos, `avfusion.inference.outputs` writes them
atomically; the `avfusion classify|localize|separate|segment|embed` commands combine the three.
"""
from avfusion.inference.methods import INFERENCE, INFERENCE_TASKS, InferenceTask
from avfusion.inference.pipeline import Pipeline, read_labels
from avfusion.inference.results import (ClassifyResult, EmbedResult, Input, LocalizeResult, SegmentResult,
                                        SeparateResult, Windows)
from avfusion.inference.windows import plan_windows

__all__ = ["INFERENCE", "INFERENCE_TASKS", "InferenceTask", "Pipeline", "ClassifyResult", "EmbedResult", "Input",
           "LocalizeResult", "SegmentResult", "SeparateResult", "Windows", "plan_windows", "read_labels"]
