"""`avfusion pretrain RECIPE [key=value ...] --output DIR [--resume auto|PATH]`: AV-MAE pretraining."""
from __future__ import annotations

import argparse

from avfusion.commands._recipes import add_recipe_arguments, resolve_recipe, submit_if_asked

EPILOG = """\
overrides come right after RECIPE, as dotted key=value pairs (YAML values):
  train.max_steps=100  train.batch_size=32  train.seed=1  train.base_lr=1.5e-4
  data.root=/data/vggsound  model.image_init=mae_pretrain_vit_base.pth  train.eval_every=10

examples:
  avfusion pretrain configs/avdigits/pretrain_tiny.yaml --output runs/tiny
  avfusion pretrain configs/pretrain/vggsound_vitb.yaml data.root=/data/vggsound --output runs/vgg --resume auto
  torchrun --standalone --nproc_per_node=8 -m avfusion pretrain configs/pretrain/vggsound_vitb.yaml \\
      data.root=/data/vggsound --output runs/vgg --resume auto
  avfusion pretrain configs/pretrain/vggsound_vitb.yaml data.root=/data/vggsound --output /shared/runs/vgg \\
      --slurm --slurm-nodes 2 --slurm-gpus-per-node 8 --slurm-partition gpu      (opt-in; needs submitit)

Batch sizes are per process. The run directory receives config.yaml, metrics.jsonl,
checkpoints/ and final/ (load with avfusion.from_pretrained). See docs/engine.md.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain", help="masked audio-visual pretraining (AV-MAE) from a recipe",
        description="Pretrain an early-fusion encoder with masked audio-visual reconstruction (AV-MAE). "
                    "Runs alone, or under torchrun for several processes (DDP).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_arguments(p, "configs/avdigits/pretrain_tiny.yaml")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from avfusion.engine import run_training
    from avfusion.tasks.pretrain import PretrainRecipe, PretrainTask

    cfg = resolve_recipe(PretrainRecipe, args)
    if cfg is not None and submit_if_asked(args, ["pretrain"]):
        return 0
    if cfg is not None:
        run_training(PretrainTask(cfg), args.output, resume=args.resume)  # logs on rank 0 only
    return 0
