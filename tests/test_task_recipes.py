"""Every registered task is built from its recipe, and nothing else: no method needs another to have run
first (the loss, the optimizer hints and the evaluation of a fresh task equal those of the task that built
the model), and an evaluation's report is returned, never kept on the task."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from avfusion.engine import load_config
from avfusion.tasks.registry import build_task, get_recipe, task_names

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "avdigits"
RECIPES = {"unimodal": "unimodal_image.yaml", "pretrain": "pretrain_tiny.yaml", "classify": "classify_finetune.yaml",
           "localize": "localize.yaml", "separate": "separate.yaml", "segment": "segment.yaml"}
SMALL = ["data.size=8", "data.eval_size=6", "train.batch_size=4", "train.progress=false"]
OPTIONS = {"pretrain": ["monitor.ks=[1,2]"], "localize": ["localize.negatives=3"]}

pytestmark = pytest.mark.usefixtures("one_thread")


def _recipe(name: str):
    return load_config(get_recipe(name), str(CONFIGS / RECIPES[name]), [*SMALL, *OPTIONS.get(name, [])])


def _memoised(task) -> set[str]:
    """The task's cached properties: values computed once from the recipe, the only attributes allowed to
    appear after construction."""
    return {name for cls in type(task).__mro__ for name, value in vars(cls).items()
            if isinstance(value, cached_property)}


def test_every_registered_task_has_a_recipe_here():
    assert set(RECIPES) == set(task_names())


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_task_needs_nothing_but_its_recipe(name):
    cfg = _recipe(name)
    builder = build_task(name, cfg)
    assert builder.cfg is cfg
    before = dict(vars(builder))
    torch.manual_seed(0)
    model = builder.build_model().eval()
    batch = builder.collate([builder.train_dataset()[i] for i in range(4)])
    fresh = build_task(name, cfg)  # never asked to build a model or a dataset

    names = [n for n, _ in model.named_parameters()]
    hints, fresh_hints = builder.param_hints(model), fresh.param_hints(model)
    ramped = [n for n in names if hints.pretrained and hints.pretrained(n)]
    assert ramped == [n for n in names if fresh_hints.pretrained and fresh_hints.pretrained(n)]
    with torch.no_grad():
        assert torch.equal(fresh.loss(model, batch)[0], builder.loss(model, batch)[0])

    loader = DataLoader(fresh.eval_dataset(), batch_size=4, collate_fn=fresh.collate)
    with torch.no_grad():
        first, second = fresh.evaluate(model, loader), builder.evaluate(model, loader)
    assert first is not second and first.metrics() and first.metrics() == second.metrics()

    for task in (builder, fresh):
        assert not hasattr(task, "last_report")
        assert {k: v for k, v in vars(task).items() if k in before} == before  # nothing reassigned
        assert set(vars(task)) - set(before) <= _memoised(task)  # nothing new but values of the recipe
