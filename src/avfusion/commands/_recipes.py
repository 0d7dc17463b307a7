"""Arguments and recipe resolution shared by the commands that train from a recipe (pretrain, train)."""
from __future__ import annotations

import argparse
import sys
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
