"""The frozen-encoder feature cache: computed once per chunk, the same bits whatever batch asks first, and
the localiser's loss from cached features equal to the loss from the encoder."""
from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset, default_collate

from avfusion.engine import load_config
from avfusion.errors import ConfigError
from avfusion.tasks.feature_cache import FeatureCache
from avfusion.tasks.localize import LocalizeRecipe, LocalizeTask

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "configs/avdigits/localize.yaml")
CACHED = ["data.size=12", "data.eval_size=8", "train.batch_size=4", "data.fresh=false", "localize.cache_features=true"]

pytestmark = pytest.mark.usefixtures("one_thread")


class Numbers(Dataset):
    def __init__(self, n: int):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 5, 7, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i]}


def _cache(data: Dataset, calls: list, chunk: int = 4) -> FeatureCache:
    layer = torch.nn.Linear(7, 3)

    def compute(batch):
        calls.append(len(batch["x"]))
        return layer(batch["x"]).sum(1), layer(batch["x"])

    return FeatureCache(data, compute, default_collate, lambda b: b, chunk=chunk)


def test_each_chunk_is_computed_once_and_rows_come_back_in_the_asked_order():
    torch.manual_seed(0)
    data, calls = Numbers(10), []
    cache = _cache(data, calls)
    pooled, tokens = cache.get(torch.tensor([9, 0, 5]))
    assert calls == [2, 4, 4] and len(cache) == 10  # chunks [8, 10), [0, 4), [4, 8): the last one is short
    assert pooled.shape == (3, 3) and tokens.shape == (3, 5, 3)
    again, _ = cache.get([0, 9, 5])
    assert calls == [2, 4, 4]  # nothing recomputed
    assert torch.equal(again, pooled[[1, 0, 2]])
    with pytest.raises(IndexError, match="outside the training set of 10"):
        cache.get([10])


def test_features_do_not_depend_on_the_batch_that_asks_first():
    """A resumed run or another batch order gets the same bits: chunks are fixed, not the asking batch."""
    torch.manual_seed(0)
    data = Numbers(10)
    first, second = _cache(data, []), _cache(data, [])
    second.compute = first.compute  # the same layer
    a = first.get([3])[1]
    second.get([7, 1, 2])
    assert torch.equal(a, second.get([3])[1])


def _task(extra=()) -> LocalizeTask:
    return LocalizeTask(load_config(LocalizeRecipe, RECIPE, [*CACHED, *extra]))


def test_the_localiser_loss_from_cached_features_equals_the_encoder_pass():
    task = _task()
    torch.manual_seed(0)
    model = task.build_model()
    model.train()
    data = task.train_dataset()
    batch = task.collate([data[i] for i in (5, 1, 10, 7)])
    direct = model(batch["image"], batch["audio"], pairing="cross").loss
    cached, _ = task.loss(model, batch)
    assert torch.allclose(cached, direct, atol=1e-5), (cached, direct)
    cached.backward()  # the heads learn from the cache; the frozen encoder gets nothing
    assert model.query_proj[1].weight.grad is not None
    assert all(p.grad is None for p in model.encoder.parameters())
    assert len(task._feature_caches[model]) == 12  # every chunk of the 12 training scenes
    del model, cached, direct
    gc.collect()
    assert len(task._feature_caches) == 0  # a model's cache goes with it


@pytest.mark.parametrize("extra, problem", [
    (["data.fresh=true"], "data.fresh=false"),
    (["model.freeze_encoder=false"], "freeze_encoder"),
    (["model.neutral_partner=false"], "neutral_partner"),
])
def test_the_cache_refuses_what_would_make_it_wrong(extra, problem):
    with pytest.raises(ConfigError, match=problem):
        _task(extra).train_dataset()


def test_a_resumed_run_with_the_cache_is_exact(tmp_path):
    """Stopped after step 3 (a checkpoint at step 2) and resumed, a cached run ends with the same heads and
    losses as one that ran straight through: the resumed process re-encodes the same chunks to the same bits."""
    import json

    from safetensors.torch import load_file

    from avfusion.cli import main

    common = ["train", "localize", RECIPE, *CACHED, "data.size=24", "train.batch_size=8", "train.progress=false",
              "train.tensorboard=false", "train.eval_every=100", "train.log_every=1"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main([*common, "train.max_steps=6", "--output", str(straight)]) == 0
    assert main([*common, "train.max_steps=3", "train.checkpoint_every=2", "--output", str(split)]) == 0
    (split / "final").rename(tmp_path / "split_final_at_3")
    assert main([*common, "train.max_steps=6", "--output", str(split), "--resume", "auto"]) == 0
    a, b = load_file(straight / "final" / "model.safetensors"), load_file(split / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def losses(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["loss"] for r in rows if "loss" in r}

    assert losses(split) == losses(straight) and len(losses(straight)) == 6
