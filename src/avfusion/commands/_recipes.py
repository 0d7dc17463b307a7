"""Arguments and recipe resolution shared by the commands that train from a recipe (pretrain, train)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_recipe_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """RECIPE, key=value overrides, --output, --resume and --print-config."""
    parser.add_argument("recipe", help=f"YAML recipe, e.g. {example}")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides of recipe keys (unknown keys are an error)")
    parser.add_argument("--output", "-o", metavar="DIR", help="run directory (required unless --print-config)")
    parser.add_argument("--resume", metavar="auto|PATH",
                        help="'auto': continue from the newest intact checkpoint in DIR (or start fresh); "
                             "PATH: resume from that checkpoint. Without it, a DIR holding checkpoints is refused")
    parser.add_argument("--print-config", action="store_true", help="print the resolved recipe as YAML and exit")
    from avfusion.engine.slurm import add_arguments
    add_arguments(parser)


def resolve_recipe(recipe_class: type, args: argparse.Namespace) -> Any | None:
    """The resolved recipe, or None once it has been printed (--print-config); --output is required otherwise."""
    import yaml

    from avfusion.engine import load_config, to_dict
    from avfusion.errors import ConfigError

    cfg = load_config(recipe_class, args.recipe, args.overrides)
    if args.print_config:
        sys.stdout.write(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return None
    if not args.output:
        raise ConfigError("--output DIR is required (the run directory)")
    return cfg


def submit_if_asked(args: argparse.Namespace, command: list[str]) -> bool:
    """With --slurm: submit `avfusion COMMAND RECIPE OVERRIDES --output DIR` as a job (paths made absolute,
    the recipe already checked here) and return True; without it, False."""
    if not getattr(args, "slurm", False):
        return False
    if args.resume is not None:
        from avfusion.errors import ConfigError
        raise ConfigError("--slurm jobs always continue from the newest checkpoint of --output (--resume auto "
                          "is implied); leave --resume out")
    from avfusion.cli import main
    from avfusion.engine.slurm import launch
    recipe = Path(args.recipe)
    recipe = str(recipe.resolve()) if recipe.exists() else args.recipe
    launch(args, [*command, recipe, *args.overrides, "--output", str(Path(args.output).resolve())], main)
    return True
