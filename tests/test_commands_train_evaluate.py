"""`avfusion train` / `avfusion evaluate`: task registry, the evaluation report, errors, 2 processes = 1."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avfusion.checkpoints import save_pretrained
from avfusion.cli import build_parser, main
from avfusion.engine import Task
from avfusion.errors import ConfigError
from avfusion.tasks.evaluation import EvaluationReport
from avfusion.tasks.registry import get_recipe, get_task, task_names

ROOT = Path(__file__).resolve().parents[1]
LINPROBE = str(ROOT / "configs/avdigits/classify_linprobe.yaml")


# ----------------------------------------------------------------------------- registry
@pytest.mark.parametrize("name", ["pretrain", "classify", "separate"])
def test_registry_gives_task_and_recipe_classes(name):
    task, recipe = get_task(name), get_recipe(name)
    assert issubclass(task, Task)
    assert {"train", "data", "model"} <= set(recipe.__dataclass_fields__)


def test_registry_names_every_task_and_rejects_others():
    assert task_names() == ("unimodal", "pretrain", "classify", "localize", "separate", "segment")
    with pytest.raises(ConfigError, match="unknown task 'detect'"):
        get_task("detect")


# ----------------------------------------------------------------------------- report
def test_report_table_json_round_trip_and_nan(tmp_path):
    report = EvaluationReport("separate", dataset="avdigits")
    report.add("model", "SDR", "bss_eval_sources_v3", 5.25, 498, {"silent estimate": 1, "silent reference": 1})
    report.add("mixture", "SDR", "bss_eval_sources_v3", float("nan"), 0)
    table = report.table()
    assert "bss_eval_sources_v3" in table and "498" in table
    assert "2 (silent estimate: 1, silent reference: 1)" in table
    path = report.write(tmp_path)
    data = json.loads(path.read_text())
    assert data["rows"][1]["value"] is None  # JSON has no NaN
    back = EvaluationReport.read(path)
    assert back.get("model", "SDR").skipped == {"silent estimate": 1, "silent reference": 1}
    assert math.isnan(back.get("mixture", "SDR").value)
    assert back.metrics()["model/SDR"] == 5.25


def test_report_metrics_keep_every_protocol():
    report = EvaluationReport("localize")
    report.add("model", "AP50", "ciou/box/fixed@0.5", 0.7, 100)
    report.add("model", "AP50", "ciou/box/median", 0.1, 100)
    report.add("center", "AP50", "ciou/box/fixed@0.5", 0.0, 100)
    assert report.metrics() == {"model/AP50": 0.7, "model/AP50[ciou/box/median]": 0.1, "center/AP50": 0.0}


# ----------------------------------------------------------------------------- CLI
def test_commands_are_registered():
    parser = build_parser()
    args = parser.parse_args(["train", "separate", "r.yaml", "a.b=1", "--output", "d", "--resume", "auto"])
    assert (args.task, args.overrides, args.output, args.resume) == ("separate", ["a.b=1"], "d", "auto")
    args = parser.parse_args(["evaluate", "classify", "r.yaml", "--checkpoint", "c.pth"])
    assert (args.task, args.checkpoint, args.output) == ("classify", "c.pth", None)


def test_user_errors_exit_1_with_a_message(tmp_path, caplog):
    assert main(["train", "classify", LINPROBE, "classify.mixupp=1", "--output", str(tmp_path)]) == 1
    assert "did you mean 'classify.mixup'" in caplog.text
    assert main(["evaluate", "classify", LINPROBE, "--checkpoint", str(tmp_path / "missing")]) == 1
    assert "no such checkpoint" in caplog.text


def test_evaluating_an_encoder_checkpoint_as_a_classifier_is_refused(tmp_path, caplog):
    from avfusion.engine import load_config
    from avfusion.models import build_model
    from avfusion.tasks.common import encoder_config_for

    cfg = load_config(get_recipe("classify"), LINPROBE)
    save_pretrained(build_model("encoder", encoder_config_for(cfg.model, cfg.data)), tmp_path / "enc")
    assert main(["evaluate", "classify", LINPROBE, "--checkpoint", str(tmp_path / "enc")]) == 1
    assert "holds a 'encoder' model, not a 'classify' model" in caplog.text


# ----------------------------------------------------------------------------- distributed
def test_two_process_evaluation_equals_one_process(tmp_path):
    """Uneven split (13 items, batch 4, 2 ranks): every item is scored once; same numbers as 1 process."""
    from avfusion.engine import load_config
    from avfusion.models import build_model
    from avfusion.tasks.common import encoder_config_for

    cfg = load_config(get_recipe("classify"), LINPROBE)
    torch.manual_seed(0)
    save_pretrained(build_model("classify", encoder_config_for(cfg.model, cfg.data), num_classes=10), tmp_path / "m")
    common = ["evaluate", "classify", LINPROBE, "data.eval_size=13", "train.batch_size=4",
              "--checkpoint", str(tmp_path / "m")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "avfusion", *common, "--output", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*common, "--output", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    one = EvaluationReport.read(tmp_path / "one" / "evaluation.json")
    two_report = EvaluationReport.read(tmp_path / "two" / "evaluation.json")
    assert two_report.meta["processes"] == 2 and one.meta["processes"] == 1
    assert [r.n for r in two_report.rows] == [13] * 4
    assert two_report.metrics() == pytest.approx(one.metrics(), abs=1e-9)
