"""Data preparation: clips per CPU-second of `avfusion data prepare` against the ffmpeg command line doing
the same transcode, and what it buys: the training loader's clips per CPU-second on prepared vs raw files.

Clips are generated here like YouTube downloads: 10 s, 1280x720 (`--size`) 30 fps H.264 (libx264 CRF 23,
B-frames, a keyframe every 250 frames) with 44.1 kHz stereo AAC. Both transcoders write the same thing:
short side 360 (bicubic), libx264 preset veryfast CRF 23, a keyframe every 16 frames (no scene cuts),
yuv420p, the AAC audio copied:

    ffmpeg -threads 1 -i IN -vf scale=-2:360:flags=bicubic -filter_threads 1 -c:v libx264 -preset veryfast \\
        -crf 23 -g 16 -keyint_min 16 -sc_threshold 0 -pix_fmt yuv420p -threads 1 -c:a copy OUT.mp4

Rows: `prepare(workers=0)` (one process, one thread: the work of one worker) and ffmpeg with one thread,
the comparison; ffmpeg with its default threading; `prepare(workers=N)` (worker processes, their CPU
counted) against N one-thread ffmpeg processes at a time (as `xargs -P N`). Every variant runs
`--repeats` times over the same clips, the order reversed every other round. "clips per
CPU-second" is over all runs, "uncontended" from the fastest run (timeit's rule, as in
`data_throughput.py`). The loader rows are `ClipDataset(train=True)` samples (one worker, one thread; as
`data_throughput.py` measures them) on the raw and on the prepared clips.

    OMP_NUM_THREADS=1 python benchmarks/data_prepare.py --clips 4 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path

import av

# torch and data_throughput (which imports torch) are imported where they are used: the worker processes
# of `prepare(workers=N)` are spawned, and each imports this script again; a second of imports each would
# be counted against the parallel row of four clips.

FFMPEG_ARGS = ["-vf", "scale=-2:360:flags=bicubic", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
               "-g", "16", "-keyint_min", "16", "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-c:a", "copy"]


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_prepare(clips: Path, out: Path, workers: int) -> None:
    from avfusion.data.prepare import prepare

    report = prepare([clips], out, workers=workers, progress=False)
    if report.counts["done"] != len(list(clips.glob("*.mp4"))):
        raise RuntimeError(f"prepare did not prepare every clip: {report.summary()}")


def run_ffmpeg(clips: Path, out: Path, threads: int | None, parallel: int = 1) -> None:
    """ffmpeg on every clip, `parallel` processes at a time (as `xargs -P`)."""
    out.mkdir(parents=True, exist_ok=True)
    one = ["-threads", "1"] if threads == 1 else []
    running: list[subprocess.Popen] = []
    for src in sorted(clips.glob("*.mp4")):
        cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *one, "-i", str(src), *FFMPEG_ARGS[:2],
               *(["-filter_threads", "1"] if threads == 1 else []), *FFMPEG_ARGS[2:], *one, str(out / src.name)]
        if len(running) >= parallel:
            _finish(running.pop(0))
        running.append(subprocess.Popen(cmd))
    for process in running:
        _finish(process)


def _finish(process: subprocess.Popen) -> None:
    if process.wait() != 0:
        raise RuntimeError(f"ffmpeg failed: {' '.join(process.args)}")


def timed(fn, n: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds incl. children) of fn(), which handles n clips."""
    w, c = time.perf_counter(), cpu_seconds()
    fn()
    return time.perf_counter() - w, cpu_seconds() - c


def transcode_rows(clips: Path, scratch: Path, repeats: int, workers: int) -> list[tuple]:
    n = len(list(clips.glob("*.mp4")))
    variants = {"avfusion data prepare, 1 process (workers 0)": partial(run_prepare, workers=0),
                "ffmpeg CLI, -threads 1": partial(run_ffmpeg, threads=1),
                "ffmpeg CLI, default threads": partial(run_ffmpeg, threads=None),
                f"avfusion data prepare, --workers {workers}": partial(run_prepare, workers=workers),
                f"ffmpeg CLI, -threads 1, {workers} processes at a time": partial(run_ffmpeg, threads=1,
                                                                                 parallel=workers)}
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    for r in range(repeats):
        order = list(variants) if r % 2 == 0 else list(variants)[::-1]    # drift hits every variant alike
        for name in order:
            out = scratch / f"out{r}_{len(runs[name])}_{abs(hash(name))}"
            runs[name].append(timed(partial(variants[name], clips, out), n))
            shutil.rmtree(out)
    return [(name, n * len(rs) / sum(w for w, _ in rs), n * len(rs) / sum(c for _, c in rs),
             n / min(c for _, c in rs)) for name, rs in runs.items()]


def loader_rows(raw: Path, prepared: Path, samples: int, repeats: int, size: str) -> list[tuple]:
    from avfusion.data.clips import ClipDataset
    from avfusion.data.indexes import Index, Item
    from data_throughput import epoch_sample, measure

    rows = []
    for what, folder in ((f"raw ({size}, keyframe every 250)", raw), ("prepared (360p, keyframe every 16)", prepared)):
        items = tuple(Item(id=p.stem, media=(p,), labels=(0,)) for p in sorted(folder.glob("*.mp4")))
        index = Index("bench", folder, {"train": items}, ("x",))
        for mode in ("keyframe", "exact"):
            ds = ClipDataset(index, "train", train=True, frame_mode=mode, seed=0)
            n = samples if mode == "keyframe" or folder == prepared else max(20, samples // 10)  # slow: fewer
            rows.append((what, mode, *measure(partial(epoch_sample, ds), n, repeats)))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=4, help="generated clips (default 4)")
    parser.add_argument("--size", type=int, nargs=2, default=[1280, 720], metavar=("W", "H"),
                        help="generated clip size (default 1280 720)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every transcoder (default 3)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="workers of the parallel row")
    parser.add_argument("--samples", type=int, default=100, help="loader samples per configuration (default 100)")
    parser.add_argument("--dir", type=Path, help="where to write the clips (default: a temporary folder)")
    args = parser.parse_args(argv)
    import torch
    from data_throughput import make_clip

    torch.set_num_threads(1)
    if shutil.which("ffmpeg") is None:
        raise SystemExit("the ffmpeg command line is needed for the comparison (apt-get install ffmpeg)")
    version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        raw = folder / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for k in range(args.clips):
            if not (raw / f"clip{k}.mp4").exists():
                make_clip(raw / f"clip{k}.mp4", 250, seed=k, fps=30, size=tuple(args.size))
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, PyAV {av.__version__} "
              f"(FFmpeg {'.'.join(map(str, av.library_versions['libavcodec']))} libavcodec), {version}; "
              f"load average {os.getloadavg()[0]:.2f}")
        rows = transcode_rows(raw, folder, args.repeats, args.workers)
        from avfusion.data.prepare import prepare
        prepare([raw], folder / "prepared", workers=0, progress=False)
        loads = loader_rows(raw, folder / "prepared", args.samples, args.repeats, "x".join(map(str, args.size)))
        print(f"load average after: {os.getloadavg()[0]:.2f}\n")
        print(f"| transcoder ({args.clips} clips {args.size[0]}x{args.size[1]}, 10 s) | clips/s (wall) | "
              "clips per CPU-second | uncontended (fastest run) |")
        print("|---|---|---|---|")
        for name, wall, cpu, fastest in rows:
            print(f"| {name} | {wall:.2f} | {cpu:.3f} | {fastest:.3f} |")
        print("\n| loader input | frame mode | clips/s (wall) | clips per CPU-second | uncontended |")
        print("|---|---|---|---|---|")
        for what, mode, wall, cpu, fastest in loads:
            print(f"| {what} | {mode} | {wall:.1f} | {cpu:.1f} | {fastest:.1f} |")


if __name__ == "__main__":
    main()
