"""The command line: the only module that parses argv."""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import pkgutil
import sys

from avfusion import __version__
from avfusion.errors import AvfusionError

#: entry-point group of the commands other packages add: ``name = "package.module:register"``
COMMAND_ENTRY_POINTS = "avfusion.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avfusion",
        description="DeepAVFusion: audio-visual early-fusion transformers (Mo & Morgado, CVPR 2024). "
                    "Pretrain, fine-tune, evaluate and run the model on your own videos.",
        epilog="Run `avfusion COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"avfusion {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import avfusion.commands as commands
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"avfusion.commands.{info.name}").register(subparsers)
    # commands that installed packages add (the AV-Digits benchmark's `avfusion benchmark`): the library
    # names none of them, so it installs and runs without them
    for entry in sorted(importlib.metadata.entry_points(group=COMMAND_ENTRY_POINTS), key=lambda e: e.name):
        entry.load()(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except AvfusionError as exc:
        # Our typed errors already say what is wrong and what to do; no traceback for users.
        logging.getLogger("avfusion").error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
