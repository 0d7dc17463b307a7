"""The demo's work, free of any web framework: checkpoints loaded once, requests run in directories of
their own, outputs written by the same code as the inference commands.

    demo = Runner(["runs/localize/final", "runs/sep/final"], workdir)
    demo.tasks                                   # {"localize": Served(...), "separate": ..., "embed": ...}
    outputs = demo.run(upload, ["localize", "separate"], Options(regions=[(0, 0, 288, 288)]))
    outputs["localize"].path                     # UPLOAD-NAME_localize/, as `avfusion localize` writes it

Every request gets a fresh directory under `workdir/runs`; a request that fails removes it whole, so
no half-written output is left, and the error (typed, with the CLI's message) reaches the caller.
Inputs are accepted only from inside `workdir` (where the web framework keeps uploads), and only up
to the size limit.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from avfusion.demo import DEFAULT_MAX_UPLOAD_MB
from avfusion.errors import CheckpointError, ConfigError, DecodeError
from avfusion.inference import INFERENCE_TASKS, Pipeline, read_labels
from avfusion.inference.loading import check_supports

log = logging.getLogger(__name__)

#: what the page offers, in the order it shows them: everything a Pipeline does
TASKS = INFERENCE_TASKS
MAX_REGIONS = 4
#: each task's output name for an input VIDEO (the commands' defaults: `avfusion localize VIDEO` writes VIDEO_localize/)
OUTPUT_NAMES = {"classify": "{stem}.classify.json", "localize": "{stem}_localize", "separate": "{stem}_separate",
                "segment": "{stem}_segment", "embed": "embeddings.npz"}

Progress = Callable[[float, str], None]


@dataclass
class Served:
    """A loaded checkpoint: the path as given, and its pipeline."""

    source: str
    pipe: Pipeline


@dataclass
class Options:
    """What a request may choose beyond the tasks (the matching command-line options)."""

    top_k: int = 5                                          # classify --top-k
    readout: str | None = None                              # localize --readout
    regions: list[tuple[float, ...]] | None = None          # separate --point / --box


@dataclass
class TaskOutput:
    """One task's result and where it was written: `path` is the command's output (a file or directory);
    `archive` the directory zipped for one download (None for a file)."""

    task: str
    result: object
    path: Path
    archive: Path | None = None

    @property
    def download(self) -> Path:
        """The one file to download: the command's file, or its directory zipped."""
        return self.archive or self.path


@dataclass
class Example:
    """A built-in clip: its file, a caption, and regions worth separating (as the regions box takes them)."""

    path: Path
    caption: str
    regions: str = ""


def parse_regions(text: str) -> list[tuple[float, ...]] | None:
    """Regions as typed on the page: entries split by ';' or new lines, each `x,y` (a point: the square of
    side min(H, W)/2 around it) or `x0,y0,x1,y1` (a box), in frame pixels. Empty: the whole frame."""
    regions = []
    for part in text.replace("\n", ";").split(";"):
        part = part.strip().strip("()[]").strip()
        if not part:
            continue
        try:
            values = tuple(float(v) for v in part.replace(" ", ",").split(",") if v)
        except ValueError:
            values = ()
        if len(values) not in (2, 4):
            raise ConfigError(f"region {part!r}: give x,y (a point) or x0,y0,x1,y1 (a box) in pixels")
        if len(values) == 4 and not (values[2] > values[0] and values[3] > values[1]):
            raise ConfigError(f"region {part!r}: a box needs x1 > x0 and y1 > y0")
        regions.append(values)
    if len(regions) > MAX_REGIONS:
        raise ConfigError(f"{len(regions)} regions given; the page separates at most {MAX_REGIONS} at once "
                          "(the command `avfusion separate` takes any number)")
    return regions or None


def format_regions(regions: Sequence[Sequence[float]]) -> str:
    return "; ".join(",".join(f"{v:g}" for v in r) for r in regions)


class Runner:
    """Loads `checkpoints` (save_pretrained directories or official .pth files) and serves requests in
    `workdir`. Each task runs on the first checkpoint of its own kind, else on the first that can do it
    (e.g. localize on an encoder's fusion attention, embed on any). `labels`: the classifier's class
    names, a file as `avfusion classify --labels` takes it."""

    def __init__(self, checkpoints: Sequence[str | os.PathLike], workdir: str | os.PathLike, *,
                 device: str = "cpu", batch_size: int = 8, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
                 labels: str | os.PathLike | None = None):
        if not checkpoints:
            raise ConfigError("give at least one --checkpoint")
        if not max_upload_mb > 0:
            raise ConfigError(f"the upload limit must be positive, got {max_upload_mb} MB")
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.max_upload_bytes = int(max_upload_mb * 1024 * 1024)
        self.served = [Served(str(c), Pipeline.from_pretrained(c, device=device, batch_size=batch_size))
                       for c in checkpoints]
        self.tasks: dict[str, Served] = {}
        self.labels = labels
        for task in TASKS:
            able = [s for s in self.served if _can(s, task)]
            own = [s for s in able if s.pipe.task == ("encoder" if task == "embed" else task)]
            if able:
                self.tasks[task] = (own or able)[0]
        if labels is not None:
            if "classify" not in self.tasks:
                raise ConfigError("--labels names a classifier's classes, but no checkpoint given classifies")
            read_labels(labels, self.tasks["classify"].pipe.model.num_classes)      # refuse a wrong file now

    # ------------------------------------------------------------------ what it offers
    def describe(self) -> list[tuple[str, str, str]]:
        """(task, checkpoint, what the checkpoint is) for every task offered."""
        return [(task, s.source, f"{s.pipe.task}, {s.pipe.window:g} s windows") for task, s in self.tasks.items()]

    def write_examples(self) -> list[Example]:
        """The built-in AV-Digits clips (`avfusion.inference.demo`), written once into the work directory."""
        from avfusion.inference.demo import write_avdigits_mixture_video, write_avdigits_video

        folder = self.workdir / "examples"
        folder.mkdir(exist_ok=True)
        scenes, duet = folder / "avdigits_scenes.mp4", folder / "avdigits_duet.mp4"
        write_avdigits_video(scenes, indices=(0, 1, 2))
        mix = write_avdigits_mixture_video(duet, index=0)
        left, right = mix["labels"]
        return [Example(scenes, "AV-Digits: three scenes, one spoken digit each (classify, localize, segment)"),
                Example(duet, f"AV-Digits duet: '{left}' on the left and '{right}' on the right speak at once "
                              "(separate the two halves)", format_regions(mix["regions"]))]

    # ------------------------------------------------------------------ inputs
    def check_input(self, video: str | os.PathLike | None) -> Path:
        """The uploaded file, refused (with the reason) when missing, outside the work directory or too big."""
        if not video:
            raise ConfigError("no video: upload or record a clip, or pick an example")
        path = Path(video).resolve()
        if not path.is_relative_to(self.workdir):
            raise ConfigError(f"{Path(video).name}: not an upload of this app (only files uploaded to it are read)")
        if not path.is_file():
            raise DecodeError(path.name, "file not found (the upload may have expired; upload it again)")
        size = path.stat().st_size
        if size > self.max_upload_bytes:
            raise ConfigError(f"{path.name}: {size / 2**20:.1f} MB is over the upload limit of "
                              f"{self.max_upload_bytes / 2**20:g} MB (`avfusion demo --max-upload-mb`)")
        return path

    def preview(self, video: str | os.PathLike) -> np.ndarray:
        """The frame shown half-way through (as displayed, rotation applied): the picture regions are drawn on."""
        from avfusion.media import probe, read_frame

        path = self.check_input(video)
        return read_frame(path, probe(path).duration / 2)

    # ------------------------------------------------------------------ a request
    def run(self, video: str | os.PathLike | None, tasks: Sequence[str], options: Options | None = None,
            progress: Progress | None = None) -> dict[str, TaskOutput]:
        """Run `tasks` on `video`; every output written as the command of the same name writes it."""
        options = options or Options()
        path = self.check_input(video)
        tasks = [t for t in TASKS if t in set(tasks)]
        if not tasks:
            raise ConfigError("choose at least one thing to run")
        missing = [t for t in tasks if t not in self.tasks]
        if missing:
            raise CheckpointError(f"none of the loaded checkpoints can {', '.join(missing)}; this app offers "
                                  f"{', '.join(self.tasks)}")
        if options.regions and len(options.regions) > MAX_REGIONS:
            raise ConfigError(f"at most {MAX_REGIONS} regions at once")
        self.prune()
        request = self.workdir / "runs" / uuid.uuid4().hex[:12]
        request.mkdir(parents=True)
        report = progress or (lambda fraction, message: None)
        try:
            outputs = {}
            for i, task in enumerate(tasks):
                report(i / len(tasks), f"{task}: running {Path(self.tasks[task].source).name} on {path.name}")
                outputs[task] = self._one(task, path, request, options)
            report(1.0, "done")
            return outputs
        except BaseException:
            shutil.rmtree(request, ignore_errors=True)
            raise

    def _one(self, task: str, video: Path, request: Path, options: Options) -> TaskOutput:
        from avfusion.inference import writers

        served = self.tasks[task]
        pipe, meta = served.pipe, writers.run_meta(task, served.source, served.pipe)
        target = request / OUTPUT_NAMES[task].format(stem=video.stem)
        if task == "classify":
            result = pipe.classify(video, top_k=options.top_k, labels=self.labels)
            return TaskOutput(task, result, writers.save_classify(result, target, meta))
        if task == "embed":
            result = pipe.embed(video)
            return TaskOutput(task, result, writers.save_embeddings([result], target, meta))
        if task == "localize":
            result = pipe.localize(video, readout=options.readout)
            out = writers.save_localize(result, target, meta)
        elif task == "separate":
            result = pipe.separate(video, regions=options.regions)
            out = writers.save_separate(result, target, meta, n_mels=pipe.n_mels)
        else:
            result = pipe.segment(video)
            out = writers.save_segment(result, target, meta)
        archive = zip_directory(out, out.with_name(out.name + ".zip"))
        return TaskOutput(task, result, out, archive)

    def prune(self, max_age_s: float = 3600.0) -> None:
        """Remove earlier requests' directories older than `max_age_s` (the page has served their files)."""
        now = time.time()
        for old in (self.workdir / "runs").glob("*"):
            try:
                if now - old.stat().st_mtime > max_age_s:
                    shutil.rmtree(old, ignore_errors=True)
            except FileNotFoundError:
                pass


def zip_directory(directory: Path, archive: Path) -> Path:
    """`directory` as a .zip whose entries start with its name, written atomically."""
    from avfusion.checkpoints.io import atomic_path

    with atomic_path(archive) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for p in sorted(directory.rglob("*")):
                if p.is_file():
                    z.write(p, Path(directory.name) / p.relative_to(directory))
    return archive


def _can(served: Served, task: str) -> bool:
    try:
        check_supports(served.pipe.model, task, served.source)
    except CheckpointError:
        return False
    return True
