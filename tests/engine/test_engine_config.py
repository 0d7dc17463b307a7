"""Recipes, overrides, schema checks and the saved resolved config."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import yaml

from avfusion.engine import TrainConfig, apply_overrides, build, load_config, load_recipe, save_config
from avfusion.engine.config import parse_override
from avfusion.errors import ConfigError


@dataclass
class Model:
    depth: int = 2
    embed_dim: int = 32
    mask_ratios: tuple[float, float] = (0.75, 0.8)


@dataclass
class Recipe:
    name: str
    train: TrainConfig = field(default_factory=TrainConfig)
    model: Model = field(default_factory=Model)


@pytest.mark.parametrize("text,keys,value", [
    ("train.epochs=200", ["train", "epochs"], 200),
    ("train.base_lr=0.00015", ["train", "base_lr"], 0.00015),
    ("train.compile=true", ["train", "compile"], True),
    ("train.clip_grad=null", ["train", "clip_grad"], None),
    ("train.clip_grad=", ["train", "clip_grad"], None),
    ("train.betas=[0.9, 0.95]", ["train", "betas"], [0.9, 0.95]),
    ("name=a=b", ["name"], "a=b"),
])
def test_parse_override(text, keys, value):
    assert parse_override(text) == (keys, value)


@pytest.mark.parametrize("bad", ["train.epochs", "=3", "train..epochs=3"])
def test_malformed_override(bad):
    with pytest.raises(ConfigError, match="dotted.key=value"):
        parse_override(bad)


def test_overrides_build_typed_config():
    data = apply_overrides({"name": "x", "train": {"epochs": 10}},
                           ["train.base_lr=1e-3", "train.betas=[0.9, 0.999]", "model.depth=4",
                            "train.precision=bf16", "train.max_steps=5"])
    cfg = build(Recipe, data)
    assert cfg.train.epochs == 10 and cfg.train.base_lr == 1e-3 and isinstance(cfg.train.base_lr, float)
    assert cfg.train.betas == (0.9, 0.999) and cfg.model.depth == 4 and cfg.train.max_steps == 5
    assert cfg.train.precision == "bf16" and cfg.model.mask_ratios == (0.75, 0.8)


@pytest.mark.parametrize("overrides,message", [
    (["train.bach_size=4"], "unknown config key 'train.bach_size'; did you mean 'train.batch_size'"),
    (["modle.depth=4"], "unknown config key 'modle'; did you mean 'model'"),
    (["model.zzz=1"], "unknown config key 'model.zzz'; valid keys of model: depth, embed_dim, mask_ratios"),
    (["train.precision=fp8"], "train.precision: 'fp8' is not one of"),
    (["train.epochs=abc"], "train.epochs: expected an integer"),
    (["train.epochs=2.5"], "train.epochs: expected an integer"),
    (["train.compile=yes please"], "train.compile: expected true or false"),
    (["model.mask_ratios=[0.5]"], "model.mask_ratios: expected 2 values"),
    (["train.batch_size=0"], "train.batch_size must be >= 1"),
    (["train.epochs.x=1"], "train.epochs is a value, not a section"),
])
def test_bad_values_and_unknown_keys(overrides, message):
    with pytest.raises(ConfigError) as info:
        build(Recipe, apply_overrides({"name": "x", "train": {"epochs": 3}}, overrides))
    assert message in str(info.value)


def test_numbers_written_as_text_are_read():
    # YAML 1.1 readers take "1e-4" (no dot) for a string; float fields accept it
    cfg = build(Recipe, {"name": "x", "train": {"base_lr": "1e-4", "epochs": "3"}})
    assert cfg.train.base_lr == 1e-4 and cfg.train.epochs == 3


def test_missing_required_key():
    with pytest.raises(ConfigError, match="name: required key is missing"):
        build(Recipe, {})


def test_recipe_includes_and_resolved_config_round_trip(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "common.yaml").write_text(
        "name: base\ntrain:\n  epochs: 200\n  base_lr: 0.00015\n  batch_size: 64\nmodel:\n  depth: 12\n")
    (tmp_path / "run.yaml").write_text("defaults: base/common\nname: run\ntrain:\n  batch_size: 32\n")
    assert load_recipe(tmp_path / "run.yaml") == {
        "name": "run", "train": {"epochs": 200, "base_lr": 1.5e-4, "batch_size": 32}, "model": {"depth": 12}}
    cfg = load_config(Recipe, tmp_path / "run.yaml", ["train.seed=3"])
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.base_lr, cfg.train.seed) == (200, 32, 1.5e-4, 3)
    saved = save_config(cfg, tmp_path / "out" / "config.yaml")
    assert yaml.safe_load(saved.read_text())["train"]["betas"] == [0.9, 0.95]
    assert load_config(Recipe, saved) == cfg


def test_recipe_include_cycle_and_missing(tmp_path):
    (tmp_path / "a.yaml").write_text("defaults: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text("defaults: a\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_recipe(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="recipe not found"):
        load_recipe(tmp_path / "nope.yaml")
