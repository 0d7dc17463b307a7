"""`avfusion evaluate TASK RECIPE --checkpoint DIR_OR_FILE [key=value ...] [--output DIR]`."""
from __future__ import annotations

import argparse
import logging
import sys

from avfusion.commands.train import DOWNSTREAM

log = logging.getLogger(__name__)

PROTOCOLS = {"vggsounder": "classify"}  # --protocol -> the task it applies to

EPILOG = """\
--checkpoint takes a directory written by training (DIR/final, save_pretrained) or an official
DeepAVFusion .pth file; official files are built with the recipe's input sizes, head counts and
fusion-token split (data.* and model.* keys), which their tensor shapes cannot reveal.

examples:
  avfusion evaluate classify configs/avdigits/classify_linprobe.yaml --checkpoint runs/tiny_linprobe/final
  avfusion evaluate separate configs/separate/vggsound_music.yaml data.root=/data/vggsound \\
      --checkpoint avsrcsep_checkpoint.pth --output runs/sep_eval
  torchrun --standalone --nproc_per_node=4 -m avfusion evaluate classify configs/classify/vggsound_finetune.yaml \\
      data.root=/data/vggsound --checkpoint runs/ft/final --output runs/ft_eval

Prints a table (subject, metric, protocol, value, N evaluated, N skipped and why); with --output
also writes it to DIR/evaluation.json. Every item is scored exactly once over all processes.

--protocol vggsounder (classify, VGGSound test clips) adds VGGSounder's numbers: the image, audio and
fusion heads as its v, a and av predictions, scored by the vggsounder package beside a chance row; with
--output the prediction file goes to DIR/vggsounder/avfusion.pkl (pip install 'avfusion[vggsounder]').
  avfusion evaluate classify configs/classify/vggsound_finetune.yaml data.root=/data/vggsound \
      --checkpoint runs/ft/final --protocol vggsounder --output runs/ft_vggsounder
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="evaluate a trained model on a task's evaluation set",
        description="Evaluate a checkpoint (ours or official) with the task's named protocols.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=DOWNSTREAM, help="the task")
    p.add_argument("recipe", help="YAML recipe: the dataset, input sizes and evaluation options")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides of recipe keys")
    p.add_argument("--checkpoint", "-c", required=True, metavar="DIR_OR_FILE",
                   help="a save_pretrained directory (e.g. RUN/final) or an official .pth file")
    p.add_argument("--output", "-o", metavar="DIR", help="write DIR/evaluation.json (and DIR/config.yaml)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS),
                   help="an extra protocol beside the task's own (vggsounder: classify on VGGSound's test clips)")
    p.set_defaults(func=run)


def protocol_overrides(args: argparse.Namespace) -> list[str]:
    """The recipe overrides --protocol stands for, put after the user's (a classify.vggsounder_dir given
    there is kept)."""
    from avfusion.errors import ConfigError

    if not getattr(args, "protocol", None):
        return []
    if PROTOCOLS[args.protocol] != args.task:
        raise ConfigError(f"--protocol {args.protocol} applies to the {PROTOCOLS[args.protocol]} task, not {args.task}")
    out = [f"classify.protocol={args.protocol}"]
    if args.output and not any(o.startswith("classify.vggsounder_dir=") for o in args.overrides):
        out.append(f"classify.vggsounder_dir={args.output}/vggsounder")
    return out


def run(args: argparse.Namespace) -> int:
    from avfusion.engine import load_config, save_config
    from avfusion.engine.distributed import init_distributed, shutdown
    from avfusion.engine.loop import seed_everything
    from avfusion.tasks.registry import build_task, get_recipe

    cfg = load_config(get_recipe(args.task), args.recipe, [*args.overrides, *protocol_overrides(args)])
    env = init_distributed(cfg.train.device)
    try:
        seed_everything(cfg.train.seed)
        report = evaluate(build_task(args.task, cfg), args.checkpoint, env)
        report.meta.update(checkpoint=str(args.checkpoint), recipe=str(args.recipe), processes=env.world_size)
        if env.is_main:
            if args.output:
                save_config(cfg, f"{args.output}/config.yaml")
                path = report.write(args.output)
                log.info("evaluation written to %s", path)
            sys.stdout.write(report.table() + "\n")
    finally:
        shutdown(env)
    return 0


def evaluate(task, checkpoint: str, env):
    """Load ``checkpoint`` as the task's model and evaluate it through the engine's one evaluation path;
    returns the task's report."""
    from avfusion.engine.loop import evaluate_model
    from avfusion.errors import ConfigError

    model = task.model_for_evaluation(checkpoint)  # every downstream task reads its own checkpoints
    report = evaluate_model(task, model.to(env.device), env)
    if report is None:
        raise ConfigError("data.eval_split is null: there is nothing to evaluate")
    return report
