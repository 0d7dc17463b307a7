"""`avfusion benchmark avdigits --output DIR [--quick] [--fusion factorized|dense|none|all]`: the command this
package adds to the `avfusion` command line (entry point group ``avfusion.commands``)."""
from __future__ import annotations

import argparse
import sys

EPILOG = """\
Pretrains a tiny early-fusion model on the AV-Digits training scenes (no labels), then runs
classification (linear probe and fine-tuning, plus the probe of a random encoder), localisation
(contrastive and attention read-outs), separation and segmentation, each beside its baselines.
DIR receives report.md, report.json, figures/, checkpoints/<stage>/ (avfusion.from_pretrained) and
runs/<stage>/ (config.yaml, metrics.jsonl, evaluation.json of each training run).

examples:
  avfusion benchmark avdigits --output runs/avdigits              # about 15 min on 2 CPU cores
  avfusion benchmark avdigits --output runs/avdigits_quick --quick
  avfusion benchmark avdigits --output runs/avdigits_ablation --fusion all

See docs/avdigits.md.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "benchmark", help="run the whole method end to end on the embedded AV-Digits benchmark",
        description="End-to-end benchmark: masked audio-visual pretraining, then all four downstream tasks "
                    "against baselines, with a report and figures.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("benchmark", choices=("avdigits",), help="the benchmark (AV-Digits, shipped with the package)")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="output directory")
    p.add_argument("--quick", action="store_true", help="small sizes (a few minutes): checks that learning happens")
    p.add_argument("--fusion", default="factorized", choices=("factorized", "dense", "none", "all"),
                   help="fusion type of the encoder; 'all': the ablation, the pipeline once per type")
    p.add_argument("--configs", metavar="DIR", help="directory of the AV-Digits recipes (default: the ones installed "
                                                    "with the package; configs/avdigits in a source checkout)")
    p.add_argument("--jobs", "-j", type=int, metavar="N",
                   help="downstream stages run N at a time in worker processes, each with CPUs/N threads "
                        "(default: the number of CPUs, at most 7; 1: everything in this process)")
    p.add_argument("--stages", metavar="KEY[,KEY...]",
                   help="run only these stages and the stages they need (e.g. 'localize' also runs the two "
                        "stage-1 streams and the AV-MAE pretraining); the keys are those of the report")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier benchmark run in DIR")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from avfusion_avdigits import FUSIONS, default_jobs, run_benchmark
    from avfusion_avdigits.report import summary
    from avfusion_avdigits.stages import with_inputs

    fusions = FUSIONS if args.fusion == "all" else (args.fusion,)
    jobs = args.jobs if args.jobs is not None else default_jobs()
    only = with_inputs([k.strip() for k in args.stages.split(",") if k.strip()]) if args.stages else None
    report = run_benchmark(args.output, quick=args.quick, fusions=fusions, configs=args.configs,
                           overwrite=args.overwrite, figures=not args.no_figures, jobs=jobs, only=only)
    sys.stdout.write(summary(report, args.output) + "\n")
    return 0
