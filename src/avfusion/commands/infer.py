"""`avfusion classify | localize | separate | segment | embed VIDEO ...`: a checkpoint on your own videos."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

COMMON_EPILOG = """\
--checkpoint takes a save_pretrained directory (e.g. RUN/final) or an official DeepAVFusion .pth file
(for official files whose input sizes differ from 224 x 224 images and 128 x 192 spectrograms, give
--image-size and --audio-size). A long video is cut into windows of the model's audio length
(--window, default 3 s for the released models), each paired with the frame at its centre; a file
shorter than one window is padded as in training. Outputs are written completely or not at all, and
never over an input.
"""

def _size(text: str) -> tuple[int, int]:
    parts = [int(p) for p in text.lower().replace("x", ",").split(",") if p]
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected N or H,W (e.g. 224 or 128,192), got {text!r}")
    return parts[0], parts[1]


def _numbers(count: int):
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {count} comma-separated numbers, got {text!r}")
        return values
    return parse


def _common(p: argparse.ArgumentParser, output_help: str) -> None:
    p.add_argument("--checkpoint", "-c", required=True, metavar="DIR_OR_FILE",
                   help="a save_pretrained directory or an official .pth file")
    p.add_argument("--output", "-o", metavar="PATH", help=output_help)
    p.add_argument("--window", type=float, metavar="SECONDS", help="window length (default: the model's audio length)")
    p.add_argument("--stride", type=float, metavar="SECONDS", help="window start spacing (default: --window)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="windows per forward pass (default 8)")
    p.add_argument("--fit", choices=("crop", "squash"),
                   help="frame to model input: centre crop (classify/embed default) or the whole frame resized")
    p.add_argument("--image-size", type=_size, metavar="H[,W]", help="official .pth only: its image size")
    p.add_argument("--audio-size", type=_size, metavar="MELS,FRAMES", help="official .pth only: its spectrogram size")


def register(subparsers) -> None:
    """One subcommand per inference task, its help, example and runner read from its record
    (`avfusion.inference.methods.INFERENCE`)."""
    from avfusion.inference.methods import INFERENCE

    for name, task in INFERENCE.items():
        p = subparsers.add_parser(name, help=task.help, description=task.help[0].upper() + task.help[1:] + ".",
                                  epilog=f"example:\n  {task.example}\n\n{COMMON_EPILOG}",
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == "embed":
            p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (any format FFmpeg reads)")
            _common(p, "the .npz to write (default: embeddings.npz)")
        else:
            p.add_argument("video", metavar="VIDEO", help="a video file (any format FFmpeg reads)")
            _common(p, "the .json to write (default: VIDEO_NAME.classify.json)" if name == "classify"
                    else f"the directory to write (default: VIDEO_NAME_{name})")
        if name == "classify":
            p.add_argument("--labels", metavar="FILE", help="class names, one per line (.csv: last column)")
            p.add_argument("--top-k", type=int, default=5, metavar="K", help="labels shown per window (default 5)")
            p.add_argument("--multi-label", action="store_true", help="sigmoid scores (AudioSet) instead of softmax")
        if name == "localize":
            p.add_argument("--readout", choices=("contrastive", "attention"),
                           help="default: contrastive when the checkpoint has the head, else attention")
        if name == "separate":
            p.add_argument("--point", dest="regions", action="append", type=_numbers(2), metavar="X,Y",
                           help="a region: the square of side min(H, W)/2 around this pixel (repeatable)")
            p.add_argument("--box", dest="regions", action="append", type=_numbers(4), metavar="X0,Y0,X1,Y1",
                           help="a region given as a pixel box (repeatable); default: the whole frame")
        if name in ("localize", "separate", "segment"):
            p.add_argument("--no-video", action="store_true", help="skip the output video (faster)")
        p.set_defaults(func=globals()[task.runner])


def _pipeline(args):
    import torch

    from avfusion.inference import Pipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    load = {k: v for k, v in (("image_size", args.image_size), ("audio_size", args.audio_size)) if v}
    return Pipeline.from_pretrained(args.checkpoint, device=device, window=args.window, stride=args.stride,
                                    batch_size=args.batch_size, fit=args.fit, progress=True, **load)


def _meta(args, pipe) -> dict:
    from avfusion.inference.writers import run_meta

    return run_meta(args.command, args.checkpoint, pipe)


def _target(args, suffix: str) -> Path:
    """The output path, checked before any work (a refused target costs the user nothing)."""
    from avfusion.inference.outputs import check_dir_target, check_file_target

    if args.command == "embed":
        return check_file_target(args.output or "embeddings.npz", args.videos, ".npz")
    target = Path(args.output) if args.output else Path(f"{Path(args.video).stem}{suffix}")
    if suffix.endswith(".json"):
        return check_file_target(target, [args.video], ".json")
    return check_dir_target(target, [args.video])


def run_classify(args) -> int:
    from avfusion.inference.writers import save_classify

    target = _target(args, ".classify.json")
    pipe = _pipeline(args)
    result = pipe.classify(args.video, top_k=args.top_k, labels=args.labels, multi_label=args.multi_label)
    path = save_classify(result, target, _meta(args, pipe))
    rows = [("whole video", result.top(result.clip_scores))]
    rows += [(f"{a:7.2f}-{b:.2f} s", result.top(s))
             for a, b, s in zip(result.windows.start, result.windows.end, result.scores)]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'window':<{width}}  top {result.top_k}"]
    for when, top in rows:
        lines.append(f"{when:<{width}}  " + ", ".join(f"{t['label']} ({t['score']:.3f})" for t in top))
    sys.stdout.write("\n".join(lines) + f"\nwritten to {path}\n")
    return 0


def run_localize(args) -> int:
    from avfusion.inference.writers import save_localize

    target = _target(args, "_localize")
    pipe = _pipeline(args)
    result = pipe.localize(args.video, readout=args.readout)
    out = save_localize(result, target, _meta(args, pipe), video=not args.no_video)
    for k, (x, y) in enumerate(result.peaks):
        w = result.windows
        sys.stdout.write(f"{w.start[k]:7.2f}-{w.end[k]:.2f} s  peak at x={x:.0f}, y={y:.0f}\n")
    sys.stdout.write(f"{result.readout} heatmaps written to {out}/\n")
    return 0


def run_segment(args) -> int:
    from avfusion.inference.writers import save_segment

    target = _target(args, "_segment")
    pipe = _pipeline(args)
    result = pipe.segment(args.video)
    out = save_segment(result, target, _meta(args, pipe), video=not args.no_video)
    sys.stdout.write(f"{len(result.windows)} masks written to {out}/\n")
    return 0


def run_separate(args) -> int:
    from avfusion.inference.writers import save_separate

    target = _target(args, "_separate")
    pipe = _pipeline(args)
    result = pipe.separate(args.video, regions=args.regions)
    out = save_separate(result, target, _meta(args, pipe), video=not args.no_video, n_mels=pipe.n_mels)
    for k, box in enumerate(result.regions):
        sys.stdout.write(f"source_{k}.wav: region ({', '.join(f'{v:.0f}' for v in box)})\n")
    sys.stdout.write(f"separated sounds written to {out}/\n")
    return 0


def run_embed(args) -> int:
    from avfusion.inference.writers import save_embeddings

    target = _target(args, ".npz")
    pipe = _pipeline(args)
    results = [pipe.embed(video) for video in args.videos]
    path = save_embeddings(results, target, _meta(args, pipe))
    for r in results:
        note = ("  (no audio stream: silence substituted, flagged in audio_substituted)"
                if r.input.audio_substituted else "")
        n = len(r.windows)
        sys.stdout.write(f"{r.input.name}: {n} window{'' if n == 1 else 's'}{note}\n")
    sys.stdout.write(f"embeddings (dim {results[0].image.shape[1]}) written to {path}\n")
    return 0

