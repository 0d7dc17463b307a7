"""Data throughput of two source trees side by side, in one run: `data_throughput.py`'s loader figure
(training samples of `ClipDataset(train=True)` per CPU-second of one data worker) for a "before" and an
"after" tree, on the same generated clips.

Each tree runs in its own worker process (PYTHONPATH = the tree's `src`, one thread); the two are given
the same blocks of 20 samples in turn, alternating which goes first, so the machine's drift hits both
alike. Every block runs `--repeats` times per tree. Prints, per frame mode, clips per CPU-second over all
runs and "uncontended" (the sum of each block's fastest run, as in `data_throughput.py`), and after/before.

    git worktree add --detach /tmp/before <commit>
    OMP_NUM_THREADS=1 python benchmarks/data_throughput_paired.py --before /tmp/before/src --after src
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(mode: str, paths: list[str]) -> None:
    """Serve blocks: read "lo hi" lines, run samples lo .. hi - 1, answer with the CPU seconds they took."""
    sys.path.insert(0, str(HERE))
    import torch
    from data_throughput import epoch_sample

    import avfusion
    from avfusion.data.clips import ClipDataset
    from avfusion.data.indexes import Index, Item

    torch.set_num_threads(1)
    items = tuple(Item(id=Path(p).stem, media=(Path(p),), labels=(0,)) for p in paths)
    ds = ClipDataset(Index("bench", Path(paths[0]).parent, {"train": items}, ("x",)), "train", train=True,
                     frame_mode=mode, seed=0)
    for k in range(3):
        epoch_sample(ds, k)
    print(f"ready {Path(avfusion.__file__).parent}", flush=True)
    for line in sys.stdin:
        lo, hi = map(int, line.split())
        cpu = time.process_time()
        for k in range(lo, hi):
            epoch_sample(ds, k)
        print(f"{time.process_time() - cpu:.6f}", flush=True)


class Side:
    """One tree's worker process and its timings."""

    def __init__(self, name: str, src: Path, mode: str, paths: list[Path]):
        env = {**os.environ, "PYTHONPATH": str(src.resolve()), "OMP_NUM_THREADS": "1"}
        self.name, self.runs = name, {}
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", mode, *map(str, paths)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = self.proc.stdout.readline().split()
        if not ready or ready[0] != "ready":
            raise RuntimeError(f"the {name} worker did not start (exit status {self.proc.wait()})")
        self.package = ready[1]

    def block(self, lo: int, hi: int) -> None:
        self.proc.stdin.write(f"{lo} {hi}\n")
        self.proc.stdin.flush()
        self.runs.setdefault(lo, []).append(float(self.proc.stdout.readline()))

    def figures(self, samples: int) -> tuple[float, float]:
        """(clips per CPU-second over all runs, uncontended clips per CPU-second)."""
        total = sum(sum(r) for r in self.runs.values())
        runs = sum(len(r) for r in self.runs.values()) // len(self.runs)
        return samples * runs / total, samples / sum(min(r) for r in self.runs.values())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def main(argv=None) -> None:
    if argv is None and sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the previous tree's src folder")
    parser.add_argument("--after", type=Path, required=True, help="the current tree's src folder")
    parser.add_argument("--samples", type=int, default=200, help="samples per frame mode (default 200)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every block per tree (default 3)")
    parser.add_argument("--gop", type=int, default=16, help="keyframe interval of the clips (default 16)")
    parser.add_argument("--modes", nargs="+", default=["keyframe", "exact"], help="frame modes")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import av
    from data_throughput import make_clip

    with tempfile.TemporaryDirectory() as tmp:
        paths = [make_clip(Path(tmp) / f"gop{args.gop}_{k}.mp4", args.gop, seed=k) for k in range(4)]
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, PyAV {av.__version__}; "
              f"load average {os.getloadavg()[0]:.2f}")
        rows = []
        for mode in args.modes:
            sides = [Side("before", args.before, mode, paths), Side("after", args.after, mode, paths)]
            for side in sides:
                print(f"{mode}: {side.name} = {side.package}")
            try:
                for n, lo in enumerate(range(0, args.samples, 20)):
                    hi = min(lo + 20, args.samples)
                    for r in range(args.repeats):
                        for side in (sides if (n + r) % 2 == 0 else sides[::-1]):
                            side.block(lo, hi)
            finally:
                for side in sides:
                    side.close()
            (b_cpu, b_fast), (a_cpu, a_fast) = (s.figures(args.samples) for s in sides)
            rows.append((mode, b_cpu, a_cpu, b_fast, a_fast))
        print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    print(f"| keyframe interval | frame mode | before: clips per CPU-second | after: clips per CPU-second | "
          "after / before | before: uncontended | after: uncontended | after / before |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, b_cpu, a_cpu, b_fast, a_fast in rows:
        print(f"| {args.gop} | {mode} | {b_cpu:.1f} | {a_cpu:.1f} | {a_cpu / b_cpu:.3f} | {b_fast:.1f} | "
              f"{a_fast:.1f} | {a_fast / b_fast:.3f} |")


if __name__ == "__main__":
    main()
