"""make_loader: skipped items are counted, named and never substituted; evaluation is strict and
covers every item once over all ranks; samples do not depend on the number of workers."""
from __future__ import annotations

import json
import logging

import pytest
import torch
from torch.utils.data import Dataset

from avfusion.data.clips import ClipDataset, FailedItem
from avfusion.data.indexes import Index, Item
from avfusion.data.loading import ShardSampler, collate_samples, make_loader
from avfusion.errors import ConfigError, DataError, DecodeError
from tests import clip_media as cm


class Toy(Dataset):
    """Item i is {"index": i, "x": tensor}; indices in `bad` fail to decode."""

    def __init__(self, n: int, bad=()):
        self.n, self.bad, self.epoch = n, set(bad), 0

    def __len__(self):
        return self.n

    def set_epoch(self, epoch):
        self.epoch = epoch

    def item_id(self, i):
        return f"item{i}"

    def __getitem__(self, i):
        if i in self.bad:
            raise DecodeError(f"/data/item{i}.mp4", "cannot open container")
        return {"index": i, "id": f"item{i}", "x": torch.full((2,), float(i + 100 * self.epoch))}


def indices(loader):
    return [i for batch in loader for i in batch["index"].tolist()]


def test_skip_drops_failing_items_names_them_and_never_substitutes(tmp_path, caplog):
    ds = Toy(200, bad={3, 50})
    loader = make_loader(ds, 8, train=True, seed=0, on_error="skip", run_dir=tmp_path, max_error_fraction=0.05)
    with caplog.at_level(logging.WARNING, logger="avfusion.data.loading"):
        for epoch in range(2):
            loader.set_epoch(epoch)
            seen = indices(loader)
            assert sorted(seen) == sorted(set(range(200)) - {3, 50})  # each good item once, nothing in their place
    assert sum("item3.mp4" in r.getMessage() for r in caplog.records) == 1  # logged once, not per epoch
    records = [json.loads(line) for line in (tmp_path / "data_errors.jsonl").read_text().splitlines()]
    assert {(r["epoch"], r["id"]) for r in records} == {(0, "item3"), (0, "item50"), (1, "item3"), (1, "item50")}
    assert records[0]["reason"] == "cannot open container"
    assert loader.errors.failed_total == 4


def test_too_many_failures_abort(tmp_path):
    loader = make_loader(Toy(100, bad={1, 2}), 4, train=True, on_error="skip", max_error_fraction=0.01,
                         run_dir=tmp_path)
    with pytest.raises(DataError, match="2 of 100 items failed"):
        indices(loader)


@pytest.mark.parametrize("workers", [0, 2])
def test_raise_keeps_the_error_type_across_workers(workers):
    loader = make_loader(Toy(10, bad={7}), 4, train=False, num_workers=workers)
    with pytest.raises(DecodeError, match="item7.mp4: cannot open container.*item7"):
        indices(loader)


class Named(Toy):
    """A dataset that says itself which sample needed the failing file (as ClipDataset does)."""

    def __getitem__(self, i):
        try:
            return super().__getitem__(i)
        except DecodeError as e:
            raise DecodeError(e.path, e.reason, f"mixture 'm{i}' of toy/train") from e


@pytest.mark.parametrize("workers", [0, 2])
def test_the_failing_sample_is_named_once_by_whoever_knows_it(workers):
    with pytest.raises(DecodeError) as plain:
        indices(make_loader(Toy(10, bad={7}), 4, train=False, num_workers=workers))
    assert str(plain.value) == "/data/item7.mp4: cannot open container [item 'item7', index 7]"
    with pytest.raises(DecodeError) as named:
        indices(make_loader(Named(10, bad={7}), 4, train=False, num_workers=workers))
    assert str(named.value) == "/data/item7.mp4: cannot open container [mixture 'm7' of toy/train]"
    assert named.value.reason == "cannot open container" and named.value.where == "mixture 'm7' of toy/train"


def test_evaluation_is_strict_and_covers_every_item_once():
    with pytest.raises(ConfigError, match="strict"):
        make_loader(Toy(10), 4, train=False, on_error="skip")
    with pytest.raises(ConfigError):
        make_loader(Toy(10), 4, train=False, drop_last=True)
    seen = []
    for rank in range(3):
        seen += indices(make_loader(Toy(10), 4, train=False, rank=rank, world_size=3))
    assert sorted(seen) == list(range(10))


def test_training_shards_are_disjoint_and_equal():
    shards = []
    for rank in range(3):
        s = ShardSampler(11, shuffle=True, seed=2, rank=rank, world_size=3)
        s.set_epoch(4)
        shards.append(list(s))
    assert [len(s) for s in shards] == [3, 3, 3]
    assert len(set(sum(shards, []))) == 9
    other = ShardSampler(11, shuffle=True, seed=2, rank=0, world_size=3)
    assert list(other) != shards[0]                                  # epoch 0 differs from epoch 4


def test_set_epoch_reaches_the_dataset_in_workers():
    loader = make_loader(Toy(4), 2, train=True, num_workers=1)
    loader.set_epoch(3)
    xs = torch.cat([b["x"][:, 0] for b in loader])
    assert sorted(xs.tolist()) == [300.0, 301.0, 302.0, 303.0]


def test_collate_keeps_ragged_values_as_lists():
    batch = collate_samples([{"index": 0, "id": "a", "boxes": torch.zeros(1, 4), "image": torch.zeros(3)},
                             {"index": 1, "id": "b", "boxes": torch.zeros(2, 4), "image": torch.ones(3)}])
    assert batch["index"].tolist() == [0, 1] and batch["id"] == ["a", "b"]
    assert isinstance(batch["boxes"], list) and batch["image"].shape == (2, 3)
    with pytest.raises(DataError, match="make_loader"):
        collate_samples([{"index": 0}, FailedItem(1, "b", "/x.mp4", "cannot open")])


def test_samples_do_not_depend_on_worker_count(tmp_path):
    items = tuple(Item(id=f"v{k}", media=(cm.video(tmp_path / f"v{k}.mp4", 1.5, gop=4),), labels=(k % 2,))
                  for k in range(4))
    ds = ClipDataset(Index("t", tmp_path, {"train": items}, ("a", "b")), "train", train=True, window=0.5,
                     image_size=(16, 16), n_mels=32, seed=9)
    batches = {}
    for workers in (0, 2):
        loader = make_loader(ds, 2, train=True, seed=1, num_workers=workers)
        loader.set_epoch(2)
        batches[workers] = {i: (b["image"][k], b["audio"][k])
                            for b in loader for k, i in enumerate(b["index"].tolist())}
    assert batches[0].keys() == batches[2].keys() == {0, 1, 2, 3}
    for i in range(4):
        assert torch.equal(batches[0][i][0], batches[2][i][0]) and torch.equal(batches[0][i][1], batches[2][i][1])
