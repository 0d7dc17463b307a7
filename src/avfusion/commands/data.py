"""`avfusion data check`, `avfusion data preview` and `avfusion data prepare`: look at a dataset before
training on it, and turn downloaded videos into the layout and encoding training reads fastest."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from avfusion.errors import ConfigError

log = logging.getLogger(__name__)

_KINDS = ("missing", "unreadable", "no_audio", "silent_audio", "frozen_video")


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def register(subparsers) -> None:
    from avfusion.data.indexes import available

    data = subparsers.add_parser("data", help="prepare, check and preview datasets",
                                 description="Prepare downloaded videos for training, check that a dataset "
                                             "decodes, or draw samples of one.")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data.set_defaults(func=lambda args: data.print_help() or 2)

    check = sub.add_parser(
        "check", help="decode every listed item and report the failing ones",
        description="Decode every item of a dataset as training reads it (a frame and the audio window; "
                    "frames and masks of still-image datasets) and count ok / missing / unreadable / "
                    "no audio / silent audio / frozen video items. Exits with status 1 when any item is "
                    "not ok (except the kinds given to --ignore).",
        epilog="Example: avfusion data check --dataset vggsound --root /data/vggsound --split test "
               "--report vggsound_test.json")
    check.add_argument("--dataset", required=True, choices=available(), metavar="NAME",
                       help=f"dataset index: {', '.join(available())}")
    check.add_argument("--root", required=True, type=Path, metavar="DIR", help="dataset root folder (or manifest file)")
    check.add_argument("--split", action="append", metavar="S", help="split to check (repeatable; default: all)")
    check.add_argument("--report", type=Path, metavar="FILE.json", help="write the per-item report here")
    check.add_argument("--option", action="append", type=_option, default=[], metavar="KEY=VALUE",
                       help="keyword argument of the dataset index, VALUE as JSON or text "
                            "(e.g. annotations=metadata/vggss.json); repeatable")
    check.add_argument("--list", action="append", type=_option, default=[], metavar="SPLIT=FILE", dest="lists",
                       help="restrict SPLIT to the ids FILE lists (first comma/whitespace field of each line, "
                            "e.g. test=vggss_heard_test.csv; relative to --root); repeatable")
    check.add_argument("--window", type=float, default=3.0, help="audio window in seconds (default 3)")
    check.add_argument("--frame-mode", choices=("exact", "keyframe"), default="exact",
                       help="frame decoding: exact (default) or keyframe (fast approximation)")
    check.add_argument("--workers", type=int, default=0, help="decoding processes (default 0: this one)")
    check.add_argument("--ignore", action="append", choices=_KINDS[2:], default=[], metavar="KIND",
                       help="do not fail on this kind: no_audio, silent_audio or frozen_video (repeatable)")
    check.set_defaults(func=run_check)

    preview = sub.add_parser(
        "preview", help="draw a grid of samples with their boxes",
        description="Render samples of a dataset into one picture: every digit's box, the sounding one "
                    "highlighted in green.",
        epilog="Example: avfusion data preview avdigits -o grid.png --split test --n 25")
    preview.add_argument("dataset", choices=("avdigits",), help="dataset to draw (avdigits)")
    preview.add_argument("-o", "--output", required=True, type=Path, help="picture to write (.png, .pdf, ...)")
    preview.add_argument("--split", default="train", choices=("train", "test"), help="split (default train)")
    preview.add_argument("--n", type=int, default=16, help="number of scenes (default 16)")
    preview.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    preview.set_defaults(func=run_preview)
    _register_prepare(sub)


def _register_prepare(sub) -> None:
    from avfusion.data.prepare import REPORT_NAME

    prepare = sub.add_parser(
        "prepare", help="re-encode downloaded videos into the layout and encoding training reads fastest",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Re-encode every video of the sources (folders, video files, or tar / tar.gz shards read "
                    "as a stream, never unpacked to disk) to 360p short side (never upscaled), H.264 with a "
                    "keyframe every 16 frames (fast random access), the audio kept (AAC), in parallel worker "
                    "processes, with a progress bar per source. With --dataset vggsound the clips go to "
                    "VGGSound's class folders (<output>/clips/<folder>/<YTID>_<start>_<end>.mp4) and the "
                    "annotations to "
                    "<output>/annotations/vggsound.csv, ready for open_index('vggsound', OUTPUT); videos the "
                    "annotations do not list are skipped and counted. Without --dataset, paths inside the "
                    "sources are kept. Resumable: finished outputs are never redone, every write is atomic. "
                    f"Failing inputs (damaged, truncated, no audio, corrupt shard) are listed in "
                    f"<output>/{REPORT_NAME} and the exit status is 1.",
        epilog="Example (the Hugging Face VGGSound mirror: vggsound.csv and 20 tar.gz shards in shards/):\n"
               "  avfusion data prepare --source shards/ --output /data/vggsound \\\n"
               "      --dataset vggsound --annotations vggsound.csv\n"
               "Run it again after an interruption or a re-download: it does only what is missing.")
    prepare.add_argument("--source", action="append", required=True, type=Path, metavar="DIR_OR_TAR",
                         help="a folder (its videos and tar archives), a video file, or a tar / tar.gz "
                              "archive (repeatable)")
    prepare.add_argument("--output", required=True, type=Path, metavar="DIR", help="folder to write into")
    prepare.add_argument("--dataset", choices=("vggsound",), help="write this dataset's layout (needs --annotations)")
    prepare.add_argument("--annotations", type=Path, metavar="CSV",
                         help="the dataset's annotation file (vggsound.csv: YTID,start,label,split)")
    prepare.add_argument("--workers", type=int, metavar="N",
                         help="worker processes (default: every core; 0: in this process)")
    prepare.set_defaults(func=run_prepare)


def run_check(args: argparse.Namespace) -> int:
    from avfusion.data.check import check_index
    from avfusion.data.indexes import open_index

    if args.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {args.workers}")
    index = open_index(args.dataset, args.root, lists=dict(args.lists) or None, **dict(args.option))
    report = check_index(index, args.split, window=args.window, frame_mode=args.frame_mode, workers=args.workers)
    print(report.summary())
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report.to_dict(), indent=1))
        print(f"per-item report: {args.report}")
    return 1 if report.failed(args.ignore) else 0


def run_prepare(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from avfusion.data.prepare import REPORT_NAME, prepare

    if args.workers is not None and args.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {args.workers}")
    try:
        with logging_redirect_tqdm():
            report = prepare(args.source, args.output, dataset=args.dataset, annotations=args.annotations,
                             workers=args.workers)
    except KeyboardInterrupt:
        log.error("interrupted: finished clips are kept (%s); run the same command again to go on",
                  args.output / REPORT_NAME)
        return 130
    print(report.summary())
    print(f"report: {args.output / REPORT_NAME}")
    return 1 if report.failed else 0


def run_preview(args: argparse.Namespace) -> int:
    from avfusion.data.preview import avdigits_grid

    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}")
    path = avdigits_grid(args.output, split=args.split, n=args.n, seed=args.seed)
    print(f"wrote {path}")
    return 0
