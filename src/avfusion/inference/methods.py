"""The inference tasks: one record each of everything known about it (`InferenceTask`), in `INFERENCE`.

A task is one method of `Pipeline` and one `avfusion TASK VIDEO ...` command; the command line, the
pipeline's checks and defaults, the output files and the demo page all read its record.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class InferenceTask:
    """One inference task: a `Pipeline` method and the command of the same name.

    Attributes:
        name: the method and command name (classify, localize, separate, segment, embed).
        help: one line of what it produces (the command's help and description).
        example: a command line that runs it (the command's epilog).
        needs: the checkpoint tasks that can run it; "fusion": any encoder with fusion blocks,
            "any": every checkpoint.
        train_hint: what to train when a checkpoint cannot run it (None when every checkpoint can).
        default_fit: how a frame becomes the model's image when `fit` is not given ("crop" | "squash",
            see `avfusion.inference.views`).
        runner: the name of the function of `avfusion.commands.infer` that runs the command (the
            inference layer knows nothing of the command line, so it names the function).
    """

    name: str
    help: str
    example: str
    needs: tuple[str, ...]
    train_hint: str | None
    default_fit: Literal["crop", "squash"]
    runner: str


def _train(what: str, task: str) -> str:
    return f"{what} (`avfusion train {task} RECIPE model.pretrained=CHECKPOINT --output DIR`)"


#: name -> record, in the order the commands and the demo page list them
INFERENCE: dict[str, InferenceTask] = {t.name: t for t in (
    InferenceTask(
        "classify", "top-k labels per window and for the whole video (table + JSON)",
        "avfusion classify street.mp4 -c runs/vggsound_ft/final --labels vggsound_labels.txt --top-k 3",
        ("classify",), _train("a classifier", "classify"), "crop", "run_classify"),
    InferenceTask(
        "localize", "where the sound comes from: heatmap pictures, an overlay video, peaks as JSON",
        "avfusion localize street.mp4 -c deepavfusion_vitb_vggsound_ep200.pth -o street_localize",
        ("localize", "fusion"),
        "a contrastive localiser (`avfusion train localize RECIPE model.pretrained=CHECKPOINT`) or an encoder "
        "with fusion blocks", "squash", "run_localize"),
    InferenceTask(
        "separate", "the sound of image regions: WAV files, spectrograms, videos with the separated sound",
        "avfusion separate duet.mp4 -c runs/sep/final --point 320,240 --box 700,100,1100,600 -o duet_sep",
        ("separate",), _train("a separator", "separate"), "squash", "run_separate"),
    InferenceTask(
        "segment", "masks of the sounding objects: PNG masks and an overlay video",
        "avfusion segment dog.mp4 -c runs/avs/final -o dog_segment",
        ("segment",), _train("a segmenter", "segment"), "squash", "run_segment"),
    InferenceTask(
        "embed", "per-window image, audio and fusion embeddings of one or more videos (.npz)",
        "avfusion embed a.mp4 b.webm -c deepavfusion_vitb_vggsound_ep200.pth -o features.npz",
        ("any",), None, "crop", "run_embed"),
)}

#: the task names, in order (what a Pipeline does)
INFERENCE_TASKS = tuple(INFERENCE)
