"""Opt-in SLURM launching through submitit: the same command, as a job of N nodes x G processes.

Nothing here runs unless asked for (`--slurm` on `avfusion pretrain` / `avfusion train`); the default
is a plain process or torchrun. The job runs the command line it was given with ``--resume auto``:
each task turns submitit's job environment into the variables torchrun would set (MASTER_ADDR,
MASTER_PORT, RANK, LOCAL_RANK, WORLD_SIZE), which `avfusion.engine.distributed` then reads as
usual, and calls the command in-process. When SLURM preempts the job or its time runs out, submitit
requeues it and the run continues from its newest checkpoint (exact resume, docs/engine.md).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from avfusion.errors import ConfigError

__all__ = ["SlurmOptions", "SlurmRun", "make_executor", "submit"]

CLUSTERS = ("slurm", "local", "debug")


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of the job (submitit / sbatch names in brackets).

    Attributes:
        nodes: nodes [--nodes].
        gpus_per_node: GPUs per node; one training process per GPU [--gpus-per-node].
        tasks_per_node: processes per node; None: ``gpus_per_node`` (at least 1).
        cpus_per_task: CPU cores per process, for its data workers [--cpus-per-task].
        time_min: wall-time limit in minutes [--time]; on expiry the job is requeued and resumes.
        partition, account, qos, constraint: passed to sbatch when set.
        mem_gb: memory per node in GB; None: the cluster default [--mem].
        cluster: "slurm"; "local" runs the job's processes on this machine (to try the launcher
            without a cluster); "debug" runs it in this process.
    """

    nodes: int = 1
    gpus_per_node: int = 8
    tasks_per_node: int | None = None
    cpus_per_task: int = 10
    time_min: int = 4320
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    mem_gb: int | None = None
    cluster: str = "slurm"

    def __post_init__(self) -> None:
        if self.cluster not in CLUSTERS:
            raise ConfigError(f"slurm cluster must be one of {CLUSTERS}, got {self.cluster!r}")
        if self.nodes < 1 or self.gpus_per_node < 0 or self.cpus_per_task < 1 or self.time_min < 1:
            raise ConfigError("--slurm-nodes, --slurm-cpus-per-task and --slurm-time must be positive, "
                              "--slurm-gpus-per-node at least 0")
        if self.tasks_per_node is not None and self.tasks_per_node < 1:
            raise ConfigError("--slurm-tasks-per-node must be at least 1")

    @property
    def processes_per_node(self) -> int:
        return self.tasks_per_node or max(self.gpus_per_node, 1)


def _submitit():
    try:
        import submitit
    except ImportError:
        raise ConfigError("--slurm needs the submitit package: pip install 'avfusion[slurm]' "
                          "(or pip install submitit)") from None
    return submitit


class SlurmRun:
    """The job's callable: one avfusion command line, resumed from its checkpoints when requeued.

    ``entry`` runs a command line and returns its exit status (the CLI's ``main``, given by the CLI
    layer: the engine imports no CLI). It travels to the job by reference, as any module function does.
    """

    def __init__(self, argv: Sequence[str], entry: Callable[[list[str]], int]):
        self.argv = [str(a) for a in argv]
        self.entry = entry

    def __call__(self) -> int:
        submitit = _submitit()
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            # torchrun's variables, read by avfusion.engine.distributed; device = LOCAL_RANK there
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        code = self.entry(self.argv)
        if code:
            raise RuntimeError(f"avfusion {' '.join(self.argv)} exited with status {code}; see the job's log")
        return code

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Called by submitit on preemption or timeout: requeue the same command (it resumes)."""
        return _submitit().helpers.DelayedSubmission(SlurmRun(self.argv, self.entry))


def make_executor(output: str | Path, options: SlurmOptions, name: str = "avfusion"):
    """A submitit executor with the job's resources; its logs go to OUTPUT/slurm/."""
    submitit = _submitit()
    folder = Path(output).resolve() / "slurm"       # JOBID_TASK_log.out / .err
    executor = submitit.AutoExecutor(folder=folder, cluster=None if options.cluster == "slurm" else options.cluster)
    params: dict[str, Any] = dict(nodes=options.nodes, tasks_per_node=options.processes_per_node,
                                  cpus_per_task=options.cpus_per_task, timeout_min=options.time_min,
                                  name=name)
    if options.gpus_per_node:
        params["gpus_per_node"] = options.gpus_per_node
    if options.mem_gb is not None:
        params["mem_gb"] = options.mem_gb
    slurm_only = {"slurm_partition": options.partition, "slurm_account": options.account,
                  "slurm_qos": options.qos, "slurm_constraint": options.constraint}
    if options.cluster == "slurm":
        params.update({k: v for k, v in slurm_only.items() if v is not None})
        params["slurm_signal_delay_s"] = 120      # time to finish the step in flight before the requeue
    elif any(v is not None for v in slurm_only.values()):
        raise ConfigError("--slurm-partition/--slurm-account/--slurm-qos/--slurm-constraint need a SLURM cluster")
    executor.update_parameters(**params)
    return executor


def submit(argv: Sequence[str], output: str | Path, options: SlurmOptions, entry: Callable[[list[str]], int]):
    """Submit `avfusion ARGV --resume auto` as a job run by ``entry`` (the CLI's main); its logs go to
    OUTPUT/slurm/. Returns the job."""
    argv = [str(a) for a in argv]
    if "--resume" in argv:
        raise ConfigError("with --slurm the job always resumes from OUTPUT's newest checkpoint (--resume auto); "
                          "leave --resume out")
    executor = make_executor(output, options, name=f"avfusion-{argv[0]}")
    return executor.submit(SlurmRun([*argv, "--resume", "auto"], entry))


def add_arguments(parser) -> None:
    """The --slurm option group of a training command."""
    g = parser.add_argument_group("SLURM (opt-in; needs `pip install submitit`)")
    g.add_argument("--slurm", action="store_true",
                   help="submit this run as a SLURM job instead of running it here; the job resumes from "
                        "OUTPUT's checkpoints whenever it is requeued (preemption, time limit)")
    d = SlurmOptions()
    g.add_argument("--slurm-nodes", type=int, default=d.nodes, metavar="N", help="nodes (default %(default)s)")
    g.add_argument("--slurm-gpus-per-node", type=int, default=d.gpus_per_node, metavar="G",
                   help="GPUs per node, one process each (default %(default)s)")
    g.add_argument("--slurm-tasks-per-node", type=int, default=None, metavar="T",
                   help="processes per node (default: one per GPU)")
    g.add_argument("--slurm-cpus-per-task", type=int, default=d.cpus_per_task, metavar="C",
                   help="CPU cores per process (default %(default)s)")
    g.add_argument("--slurm-time", type=int, default=d.time_min, metavar="MIN",
                   help="time limit per job in minutes; the run requeues and resumes (default %(default)s)")
    g.add_argument("--slurm-partition", help="partition")
    g.add_argument("--slurm-account", help="account")
    g.add_argument("--slurm-qos", help="quality of service")
    g.add_argument("--slurm-constraint", help="node constraint, e.g. volta32gb")
    g.add_argument("--slurm-mem-gb", type=int, default=None, metavar="GB", help="memory per node")
    g.add_argument("--slurm-cluster", choices=CLUSTERS, default="slurm",
                   help="'local': run the job's processes on this machine through submitit (to try it "
                        "without a cluster); 'debug': in this process")


def options_from(args) -> SlurmOptions:
    return SlurmOptions(nodes=args.slurm_nodes, gpus_per_node=args.slurm_gpus_per_node,
                        tasks_per_node=args.slurm_tasks_per_node, cpus_per_task=args.slurm_cpus_per_task,
                        time_min=args.slurm_time, partition=args.slurm_partition, account=args.slurm_account,
                        qos=args.slurm_qos, constraint=args.slurm_constraint, mem_gb=args.slurm_mem_gb,
                        cluster=args.slurm_cluster)


def launch(args, argv: Sequence[str], entry: Callable[[list[str]], int]):
    """Submit the command (for the CLI, which passes its main as ``entry``): prints the job id and where
    its logs go; returns the job."""
    job = submit(argv, args.output, options_from(args), entry)
    logs = Path(args.output).resolve() / "slurm"
    sys.stdout.write(f"submitted job {job.job_id}: avfusion {' '.join(argv)}\n"
                     f"logs: {logs}/{job.job_id}_<task>_log.out|err\n")
    return job
