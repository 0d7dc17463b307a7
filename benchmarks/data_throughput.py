"""Data throughput: training samples per second of one data worker (one process, one thread).

A sample is what `ClipDataset(train=True)` returns: one frame (random window, temporal jitter) +
3 s of audio, random resized crop + flip + normalisation to 224x224, random gain, 128-bin log-mel.
Clips are generated here: 10 s, 640x360, 25 fps H.264 (libx264 CRF 23, B-frames) with 44.1 kHz
stereo AAC, keyframe every 16 or 250 frames. Frame modes `keyframe` and `exact` are measured, and
for reference the same sample built from the public per-call readers (`media.probe`,
`media.read_frame`, `media.read_audio`: three opens, FFmpeg's default threading).

    OMP_NUM_THREADS=1 python benchmarks/data_throughput.py --samples 200

Every block of 20 samples runs `--repeats` times (the same windows and crops each time). Prints a
Markdown table: clips/s by wall clock and per CPU-second of this process over all runs, the
"uncontended" clips per CPU-second from each block's fastest run (timeit's rule: on a shared machine
the fastest of identical runs is the one least slowed down by other processes, the estimate of one
dedicated core), and the load average (the wall-clock figure is a lower bound).
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from functools import partial
from pathlib import Path

import av
import numpy as np
import torch


def make_clip(path: Path, gop: int, seed: int, seconds: int = 10, fps: int = 25, size=(640, 360),
              rate: int = 44100) -> Path:
    """A textured, moving 360p H.264 clip with a tone-plus-noise AAC track."""
    rng = np.random.default_rng(seed)
    w, h = size
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "crf": "23", "preset": "veryfast"}
        a = c.add_stream("aac", rate=rate)
        a.layout = "stereo"
        blocks = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
        ramp = np.arange(w, dtype=np.int64)[None, :]
        for i in range(seconds * fps):
            img = np.roll(blocks, 4 * i, axis=1)
            img[..., 0] = ((ramp + 3 * i) % 256).astype(np.uint8)
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        for s in range(0, seconds * rate, 1024):
            t = (s + np.arange(1024)) / rate
            x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(1024)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.stack([x, x]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = rate, s
            for p in a.encode(frame):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    return path


def separate_reader_sample(path: Path, seed: int, mode: str):
    """The same sample through the public one-call-per-read functions (its randomness drawn from `seed`)."""
    from avfusion.audio import log_mel_spectrogram, random_gain
    from avfusion.transforms import train_transform
    from avfusion.media import probe, read_audio, read_frame

    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    duration = probe(path).duration
    start = rng.uniform(0, duration - 3.0)
    image = train_transform(read_frame(path, start + 1.5, mode), 224, gen)
    audio = log_mel_spectrogram(random_gain(torch.from_numpy(read_audio(path, start, start + 3.0)), gen), 16000)
    return image, audio


def epoch_sample(ds, k: int):
    """Sample k: item k % len(ds) in epoch k // len(ds) (each epoch draws other windows and crops)."""
    ds.set_epoch(k // len(ds))
    return ds[k % len(ds)]


def measure(fn, samples: int, repeats: int, block: int = 20) -> tuple[float, float, float]:
    """(clips/s wall, clips per CPU-second, clips per CPU-second uncontended) over fn(0) .. fn(samples - 1).

    fn(k) must do the same work every time it is called with k. The samples are timed in blocks of
    `block`; every block runs `repeats` times. The first two figures use every run; the third sums each
    block's fastest run (timeit's rule: the fastest of identical runs is the one least slowed down by
    other processes, so it estimates one dedicated core).
    """
    for k in range(3):
        fn(k)
    wall = cpu = fastest = 0.0
    for lo in range(0, samples, block):
        runs = []
        for _ in range(repeats):
            w, c = time.perf_counter(), time.process_time()
            for k in range(lo, min(lo + block, samples)):
                fn(k)
            wall, runs = wall + time.perf_counter() - w, runs + [time.process_time() - c]
        cpu, fastest = cpu + sum(runs), fastest + min(runs)
    return samples * repeats / wall, samples * repeats / cpu, samples / fastest


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="samples per configuration (default 200)")
    parser.add_argument("--clips", type=int, default=4, help="generated clips per keyframe interval (default 4)")
    parser.add_argument("--gops", type=int, nargs="+", default=[16, 250], help="keyframe intervals (frames)")
    parser.add_argument("--dir", type=Path, help="where to write the clips (default: a temporary folder)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of every block of 20 samples (default 3; the uncontended column takes the fastest)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the per-call reader reference")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from avfusion.data.clips import ClipDataset
    from avfusion.data.indexes import Index, Item

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
              f"torch {torch.__version__}, PyAV {av.__version__}; load average {os.getloadavg()[0]:.2f}")
        rows = []
        for gop in args.gops:
            paths = [make_clip(folder / f"gop{gop}_{k}.mp4", gop, seed=k) for k in range(args.clips)]
            items = tuple(Item(id=p.stem, media=(p,), labels=(0,)) for p in paths)
            index = Index("bench", folder, {"train": items}, ("x",))
            for mode in ("keyframe", "exact"):
                n = args.samples if mode == "keyframe" or gop <= 16 else max(20, args.samples // 10)
                ds = ClipDataset(index, "train", train=True, frame_mode=mode, seed=0)
                rows.append((gop, mode, "ClipDataset", *measure(partial(epoch_sample, ds), n, args.repeats)))
                if not args.no_baseline:
                    fn = lambda k: separate_reader_sample(paths[k % len(paths)], k, mode)  # noqa: E731
                    rows.append((gop, mode, "per-call readers", *measure(fn, n, args.repeats)))
        print(f"load average after: {os.getloadavg()[0]:.2f}\n")
        print("| keyframe interval | frame mode | pipeline | clips/s (wall) | clips per CPU-second | "
              "uncontended (fastest of each block's runs) |")
        print("|---|---|---|---|---|---|")
        for gop, mode, what, wall, cpu, fastest in rows:
            print(f"| {gop} | {mode} | {what} | {wall:.1f} | {cpu:.1f} | {fastest:.1f} |")


if __name__ == "__main__":
    main()
