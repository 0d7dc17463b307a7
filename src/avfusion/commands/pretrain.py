"""`avfusion pretrain RECIPE [key=value ...] --output DIR [--resume auto|PATH]`: AV-MAE pretraining."""
from __future__ import annotations

import argparse
import sys

EPILOG = """\
overrides come right after RECIPE, as dotted key=value pairs (YAML values):
  train.max_steps=100  train.batch_size=32  train.seed=1  train.base_lr=1.5e-4
  data.root=/data/vggsound  model.image_init=mae_pretrain_vit_base.pth  train.eval_every=10

examples:
  avfusion pretrain configs/avdigits/pretrain_tiny.yaml --output runs/tiny
  avfusion pretrain configs/pretrain/vggsound_vitb.yaml data.root=/data/vggsound --output runs/vgg --resume auto
  torchrun --standalone --nproc_per_node=8 -m avfusion pretrain configs/pretrain/vggsound_vitb.yaml \\
      data.root=/data/vggsound --output runs/vgg --resume auto

Batch sizes are per process. The run directory receives config.yaml, metrics.jsonl,
checkpoints/ and final/ (load with avfusion.from_pretrained). See docs/engine.md.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain", help="masked audio-visual pretraining (AV-MAE) from a recipe",
        description="Pretrain an early-fusion encoder with masked audio-visual reconstruction (AV-MAE). "
                    "Runs alone, or under torchrun for several processes (DDP).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", help="YAML recipe, e.g. configs/avdigits/pretrain_tiny.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides of recipe keys (unknown keys are an error)")
    p.add_argument("--output", "-o", metavar="DIR", help="run directory (required unless --print-config)")
    p.add_argument("--resume", metavar="auto|PATH",
                   help="'auto': continue from the newest intact checkpoint in DIR (or start fresh); "
                        "PATH: resume from that checkpoint. Without it, a DIR holding checkpoints is refused")
    p.add_argument("--print-config", action="store_true", help="print the resolved recipe as YAML and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from avfusion.engine import load_config, run_training, to_dict
    from avfusion.errors import ConfigError
    from avfusion.tasks.pretrain import PretrainRecipe, PretrainTask

    cfg = load_config(PretrainRecipe, args.recipe, args.overrides)
    if args.print_config:
        sys.stdout.write(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    if not args.output:
        raise ConfigError("--output DIR is required (the run directory)")
    run_training(PretrainTask(), cfg, args.output, resume=args.resume)  # logs on rank 0 only
    return 0
