"""The opt-in SLURM launcher, run through submitit's local executor (no cluster needed)."""
from __future__ import annotations

import json

import pytest

submitit = pytest.importorskip("submitit")

from avfusion.cli import main  # noqa: E402
from avfusion.engine.slurm import SlurmOptions, submit  # noqa: E402
from avfusion.errors import ConfigError  # noqa: E402

from tests.test_task_pretrain import SMALL as PRETRAIN_SMALL, TINY  # noqa: E402

SMALL = [*PRETRAIN_SMALL, "train.batch_size=4"]


def test_a_two_process_job_trains_with_ddp_and_resumes_when_requeued(tmp_path):
    out = tmp_path / "run"
    argv = ["pretrain", TINY, *SMALL, "train.max_steps=2", "--output", str(out)]
    options = SlurmOptions(gpus_per_node=0, tasks_per_node=2, cpus_per_task=1, time_min=10, cluster="local")
    job = submit(argv, out, options, main)
    assert job.results() == [0, 0]                                   # both tasks finished the command
    config = (out / "config.yaml").read_text()
    assert "max_steps: 2" in config and (out / "final" / "model.safetensors").is_file()
    logs = sorted(p.name for p in (out / "slurm").glob(f"{job.job_id}_*_log.err"))
    assert len(logs) == 2
    assert "2 process(es) x batch 4" in (out / "slurm" / logs[0]).read_text()   # one process group of 2
    # a requeued job runs the same command again: it continues from the checkpoints (here: to step 3)
    job = submit(["pretrain", TINY, *SMALL, "train.max_steps=3", "--output", str(out)], out, options, main)
    assert job.results() == [0, 0]
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_requeue_on_preemption_is_the_same_command():
    from avfusion.engine.slurm import SlurmRun

    run = SlurmRun(["pretrain", "r.yaml", "--output", "/x", "--resume", "auto"], main)
    delayed = run.checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission) and delayed.function.argv == run.argv


def test_cli_submits_and_refuses_conflicting_options(tmp_path, capsys, caplog):
    out = tmp_path / "run"
    assert main(["pretrain", TINY, *SMALL, "train.max_steps=1", "--output", str(out), "--slurm",
                 "--slurm-cluster", "debug", "--slurm-gpus-per-node", "0"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("submitted job ") and str(out / "slurm") in printed
    assert main(["pretrain", TINY, "--output", str(out), "--slurm", "--resume", "auto"]) == 1
    assert "--resume auto is implied" in caplog.text
    with pytest.raises(ConfigError, match="need a SLURM cluster"):
        submit(["pretrain", TINY, "--output", str(out)], out,
               SlurmOptions(gpus_per_node=0, partition="gpu", cluster="local"), main)


def test_the_sbatch_script_asks_for_the_options(tmp_path, monkeypatch):
    """What a real cluster would get, without one: submitit only needs an `srun` on PATH to build it."""
    from avfusion.engine.slurm import make_executor

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{__import__('os').environ['PATH']}")
    options = SlurmOptions(nodes=2, gpus_per_node=8, cpus_per_task=10, time_min=600, partition="gpu",
                           account="vision", constraint="volta32gb", mem_gb=400)
    script = make_executor(tmp_path / "run", options)._executor._make_submission_file_text("CMD", "uid")
    for line in ("--nodes=2", "--ntasks-per-node=8", "--gpus-per-node=8", "--cpus-per-task=10", "--time=600",
                 "--partition=gpu", "--account=vision", "--constraint=volta32gb", "--mem=400GB", "--signal=USR2@120"):
        assert f"#SBATCH {line}" in script, line
    assert str(tmp_path / "run" / "slurm") in script
