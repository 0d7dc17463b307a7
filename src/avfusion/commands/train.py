"""`avfusion train TASK RECIPE [key=value ...] --output DIR [--resume auto|PATH]`: downstream training."""
from __future__ import annotations

import argparse
import sys

from avfusion.commands._recipes import add_recipe_arguments, resolve_recipe, submit_if_asked

from avfusion.tasks.registry import downstream_tasks

DOWNSTREAM = downstream_tasks()
TRAINABLE = ("unimodal", *DOWNSTREAM)  # unimodal: a stream's initialisation (its own modality alone)

EPILOG = """\
overrides come right after RECIPE, as dotted key=value pairs (YAML values):
  model.pretrained=runs/avdigits_tiny/final   (a save_pretrained directory or an official .pth file)
  train.max_steps=100  train.batch_size=32  data.root=/data/vggsound  classify.mixup=0

examples:
  avfusion train unimodal configs/avdigits/unimodal_image.yaml --output runs/image_stream
      (then model.image_init=runs/image_stream/final/stream.pth in a pretraining recipe)
  avfusion train classify configs/avdigits/classify_linprobe.yaml model.pretrained=runs/tiny/final \\
      --output runs/tiny_linprobe
  avfusion train separate configs/separate/vggsound_music.yaml data.root=/data/vggsound \\
      model.pretrained=checkpoint_latest.pth --output runs/sep --resume auto
  torchrun --standalone --nproc_per_node=8 -m avfusion train classify configs/classify/vggsound_finetune.yaml \\
      data.root=/data/vggsound model.pretrained=checkpoint_latest.pth --output runs/ft --resume auto
  avfusion train classify configs/classify/vggsound_finetune.yaml data.root=/data/vggsound \\
      model.pretrained=checkpoint_latest.pth --output /shared/runs/ft --slurm --slurm-gpus-per-node 8

Batch sizes are per process. DIR receives config.yaml, metrics.jsonl, checkpoints/, final/ and, when
the recipe evaluates (train.eval_every > 0), evaluation.json with the last evaluation table.
Evaluate a trained model with `avfusion evaluate TASK RECIPE --checkpoint DIR/final`.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a downstream task (classify, localize, separate, segment) or a unimodal stream "
                      "initialisation from a recipe",
        description="Train a downstream task through the training engine: fine-tuning or a linear "
                    "probe of a pretrained encoder; or `unimodal`: one stream alone on its own modality "
                    "(the counterpart of MAE / AudioMAE), saved as DIR/final/stream.pth for "
                    "model.image_init / model.audio_init. Runs alone, or under torchrun (DDP).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=TRAINABLE, help="the task")
    add_recipe_arguments(p, "configs/avdigits/classify_linprobe.yaml")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from avfusion.engine import run_training
    from avfusion.engine.distributed import init_distributed, shutdown
    from avfusion.tasks.registry import build_task, get_recipe

    cfg = resolve_recipe(get_recipe(args.task), args)
    if cfg is None or submit_if_asked(args, ["train", args.task]):
        return 0
    env = init_distributed(cfg.train.device)  # joined here so that the report is written by rank 0 only
    try:
        result = run_training(build_task(args.task, cfg), args.output, resume=args.resume)
        report = result.eval_report  # an EvaluationReport: every trainable task's evaluate returns one
        if report is not None and env.is_main:
            report.meta.update(step=result.step, processes=env.world_size)
            report.write(args.output)
            sys.stdout.write(report.table() + "\n")
    finally:
        shutdown(env)
    return 0
