"""`avfusion data prepare`: downloaded videos -> what the DeepAVFusion recipes read fastest.

Every video of the sources (folders, video files, tar / tar.gz shards read as streams) is re-encoded by
`avfusion.media.transcode.transcode` (360p short side, never upscaled; H.264 with a keyframe every 16
frames; the audio kept) into the output layout (`avfusion.data.prepare_sources`), in parallel worker
processes, with a progress bar per source.

Resumable and safe to interrupt: an output that exists is finished and never redone (every output is
written to a hidden temporary file beside it and renamed into place); temporaries a killed run left are
removed at the start. The sources are only read. Inputs that fail (damaged, truncated, no audio, no
video, a corrupt archive) are listed with their reason in `<output>/prepare_report.json` and logged; a
corrupt archive stops that archive only, keeping what it already gave. Failures of the output (disk
full, permissions) stop the run with OutputError.
"""
from __future__ import annotations

import io
import json
import logging
import os
import signal
import tempfile
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from avfusion.data.prepare_sources import CorruptSource, Entry, Source, make_layout, open_sources
from avfusion.errors import ConfigError, DataError, DecodeError
from avfusion.media.transcode import TranscodeSettings

log = logging.getLogger(__name__)

__all__ = ["REPORT_NAME", "Failure", "PrepareReport", "prepare", "prepare_one", "default_workers"]

REPORT_NAME = "prepare_report.json"
TMP_SUFFIX = ".prepare-tmp"
COUNTS = ("done", "already_done", "not_in_annotations", "failed")


@dataclass(frozen=True)
class Failure:
    source: str          # the input: a path, `archive:member`, or the archive itself
    reason: str


@dataclass
class PrepareReport:
    output: str
    dataset: str | None
    settings: dict[str, Any]
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    failed: list[Failure] = field(default_factory=list)
    not_in_annotations: list[str] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False

    def fail(self, source: str, reason: str) -> None:
        self.failed.append(Failure(source, reason))
        self.counts["failed"] += 1
        log.warning("failed: %s: %s", source, reason)

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "dataset": self.dataset, "settings": self.settings, "counts": self.counts,
                "interrupted": self.interrupted, "failed": [asdict(f) for f in self.failed],
                "sources": self.sources, "not_in_annotations": self.not_in_annotations}

    def summary(self, max_items: int = 20) -> str:
        c = self.counts
        rows = [f"{self.output}: {c['done']} prepared, {c['already_done']} already done, "
                f"{c['not_in_annotations']} not in the annotations, {c['failed']} failed"
                + (" (interrupted)" if self.interrupted else "")]
        if self.failed:
            more = f" (first {max_items}; all in {REPORT_NAME})" if len(self.failed) > max_items else ""
            rows.append(f"failed{more}:")
            rows += [f"  {f.source}: {f.reason}" for f in self.failed[:max_items]]
        return "\n".join(rows)

    def write(self, path: Path) -> Path:
        _atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")
        return path


def _file_mode() -> int:
    """The permissions of a new file under the umask (`mkstemp` makes its files private)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def prepare_one(name: str, src: Path | bytes, dst: Path, settings: TranscodeSettings) -> Failure | None:
    """Transcode one input to `dst` through a temporary file renamed into place; a failing input is
    returned as a Failure (nothing written), a failing output raises OutputError."""
    from avfusion.media.transcode import transcode

    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=TMP_SUFFIX, dir=dst.parent)
    os.close(fd)
    try:
        transcode(io.BytesIO(src) if isinstance(src, bytes) else src, tmp, settings, name=name)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, dst)
        return None
    except DecodeError as exc:
        return Failure(name, exc.reason)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def default_workers() -> int:
    """Every core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_busy = False      # a worker process is inside a job


class _Stopped(BaseException):
    """SIGTERM in a worker process (the main process stops its workers after Ctrl-C or an error)."""


def _worker_init() -> None:
    """Worker processes leave Ctrl-C to the main process, which stops them with SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_term)


def _on_term(signum, frame) -> None:
    if not _busy:
        os._exit(128 + signum)
    raise _Stopped


def _worker_job(*args) -> Failure | None:
    """`prepare_one` in a worker; stopped, it exits once `prepare_one` has deleted its temporary file
    (raising would only hand the exception to the pool, whose worker would take the next job)."""
    global _busy
    _busy = True
    try:
        return prepare_one(*args)
    except _Stopped:
        os._exit(128 + signal.SIGTERM)
    finally:
        _busy = False


class _Jobs:
    """Runs `prepare_one` here (workers 0) or in worker processes, at most 2 per worker in flight (bounding
    the archive members held in memory), and books the outcomes in the report. `claimed`: the outputs
    made or being made in this run (a failed one is released, so a later copy of the input can try)."""

    def __init__(self, workers: int, report: PrepareReport, settings: TranscodeSettings):
        self.report, self.settings = report, settings
        self.pool = None
        self.window = 2 * workers
        self.pending: dict[Future, tuple[str, Path]] = {}
        self.claimed: set[Path] = set()
        if workers > 0:
            import multiprocessing as mp
            self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init)

    def submit(self, name: str, src: Path | bytes, dst: Path) -> None:
        self.claimed.add(dst)
        if self.pool is None:
            self._book(prepare_one(name, src, dst, self.settings), dst)
            return
        while len(self.pending) >= self.window:
            self._collect()
        self.pending[self.pool.submit(_worker_job, name, src, dst, self.settings)] = (name, dst)

    def _collect(self) -> None:
        done, _ = wait(list(self.pending), return_when=FIRST_COMPLETED)
        for future in done:
            name, dst = self.pending.pop(future)
            try:
                failure = future.result()        # an OutputError or a bug in a worker stops the run here
            except BrokenProcessPool as exc:
                names = [name, *(n for n, _ in self.pending.values())]
                raise DataError(f"a worker process died (FFmpeg crashed?) on one of: {', '.join(names)}; "
                                "run again (finished clips are kept), with --workers 0 to see which") from exc
            self._book(failure, dst)

    def _book(self, failure: Failure | None, dst: Path) -> None:
        if failure is None:
            self.report.counts["done"] += 1
        else:
            self.claimed.discard(dst)
            self.report.fail(failure.source, failure.reason)

    def drain(self) -> None:
        while self.pending:
            self._collect()

    def close(self, finished: bool) -> None:
        """Wait for the workers after a finished run; stop them at once after an error or Ctrl-C (their
        temporary files are deleted; outputs already renamed into place are kept)."""
        if self.pool is None:
            return
        if not finished:
            for future in self.pending:
                future.cancel()
            if hasattr(self.pool, "terminate_workers"):                  # Python 3.14
                self.pool.terminate_workers()
            else:                                # SIGTERM: see `_worker_job`
                for process in list((getattr(self.pool, "_processes", None) or {}).values()):
                    process.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _remove_stale_temporaries(output: Path) -> int:
    """Delete the temporary files a killed run left under `output`; how many there were."""
    stale = [Path(folder) / f for folder, _, files in os.walk(output) for f in files
             if f.startswith(".") and f.endswith(TMP_SUFFIX)]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def _run_source(source: Source, layout, jobs: _Jobs, report: PrepareReport, progress: bool) -> dict[str, Any]:
    """Queue every video of one source; a corrupt archive is reported and ends this source only."""
    from tqdm.auto import tqdm

    info: dict[str, Any] = {"source": str(source.path), "kind": source.kind, "videos": 0, "complete": True}
    bar = tqdm(desc=source.path.name, unit=source.unit, unit_scale=source.unit == "B", disable=not progress,
               dynamic_ncols=True)
    try:
        for entry in source.entries():
            info["videos"] += 1
            _queue(entry, layout, jobs, report)
            bar.total = source.total
            bar.update(source.position - bar.n)
            bar.set_postfix(report.counts, refresh=False)
    except CorruptSource as exc:
        report.fail(exc.path, f"corrupt archive, stopped after {exc.members} members: {exc.reason}")
        info.update(complete=False, error=exc.reason, members_read=exc.members)
    finally:
        bar.close()
    if source.kind == "tar":
        info.setdefault("members_read", source.members)
    return info


def _queue(entry: Entry, layout, jobs: _Jobs, report: PrepareReport) -> None:
    try:
        dst = layout.target(entry)
    except DataError as exc:
        report.fail(entry.name, str(exc))
        return
    if dst is None:
        report.counts["not_in_annotations"] += 1
        report.not_in_annotations.append(entry.name)
    elif dst in jobs.claimed or dst.exists():
        report.counts["already_done"] += 1
    else:
        jobs.submit(entry.name, entry.load(), dst)


def prepare(sources: Sequence[str | Path], output: str | Path, *, dataset: str | None = None,
            annotations: str | Path | None = None, workers: int | None = None,
            settings: TranscodeSettings = TranscodeSettings(), progress: bool = True) -> PrepareReport:
    """Prepare every video of `sources` into `output` (see the module docstring); returns the report, also
    written to `<output>/prepare_report.json`. `workers`: processes (default: every core; 0: this one)."""
    output = Path(output).expanduser()
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise ConfigError(f"workers must be >= 0, got {workers}")
    layout = make_layout(output, dataset, annotations)
    opened = open_sources(sources, skip=output)                 # every source exists before any work
    output.mkdir(parents=True, exist_ok=True)
    if stale := _remove_stale_temporaries(output):
        log.info("%s: removed %d temporary files of an interrupted run", output, stale)
    layout.install()
    report = PrepareReport(str(output), layout.dataset, asdict(settings))
    jobs = _Jobs(workers, report, settings)
    try:
        for source in opened:
            report.sources.append(_run_source(source, layout, jobs, report, progress))
        jobs.drain()
    except BaseException:
        report.interrupted = True
        raise
    finally:
        jobs.close(finished=not report.interrupted)
        report.write(output / REPORT_NAME)
    return report
