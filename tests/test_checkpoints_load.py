"""The checkpoint funnel: `avfusion.checkpoints.load(source, expect=...)` over checkpoints the code itself wrote
(save_pretrained directories, export_official files, `save`'s bare weights), for every value `expect` takes."""
from __future__ import annotations

import pytest
import torch

from avfusion.checkpoints import ENCODER_WEIGHTS, MODEL, EncoderWeights, export_official, load, save, save_pretrained
from avfusion.checkpoints.loading import expectations, recorded_task
from avfusion.errors import CheckpointError, ConfigError
from avfusion.models import TASKS, EncoderConfig, build_model

#: a tiny encoder every task model accepts (the segmenter's decoder needs width >= 128)
CONFIG = EncoderConfig(image_size=(32, 32), audio_size=(32, 32), patch_size=16, embed_dim=128, depth=2, num_heads=2,
                       fusion_layers="all", num_fusion_tokens=(2, 1, 1), fusion_num_heads=2)
OPTIONS = {"encoder": {}, "pretrain": {"decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2},
           "classify": {"num_classes": 3}, "localize": {"proj_dim": 8, "hidden_dim": 16}, "separate": {},
           "segment": {"num_classes": 1}}
#: the models the official layout holds (the localiser is avfusion's own)
OFFICIAL = ("encoder", "pretrain", "classify", "separate", "segment")


def tiny(task: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(task, CONFIG, **OPTIONS[task]).eval()


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module | dict) -> None:
    sa, sb = a.state_dict(), (b if isinstance(b, dict) else b.state_dict())
    assert set(sa) == set(sb)
    for key, tensor in sa.items():
        assert torch.equal(sb[key], tensor), key


def test_expect_takes_model_encoder_weights_and_every_task():
    assert expectations() == (MODEL, ENCODER_WEIGHTS, *TASKS)


@pytest.mark.parametrize("task", TASKS)
def test_a_directory_loads_as_its_task_and_as_any_model(tmp_path, task):
    model = tiny(task)
    save_pretrained(model, tmp_path / "m")
    assert recorded_task(tmp_path / "m") == task
    for expect in (task, MODEL):
        loaded = load(tmp_path / "m", expect=expect, recipe=CONFIG)
        assert type(loaded) is type(model) and not loaded.training
        assert_same_weights(model, loaded)


@pytest.mark.parametrize("task", OFFICIAL)
def test_an_official_file_loads_as_its_task_and_as_any_model(tmp_path, task):
    model = tiny(task)
    export_official(model, tmp_path / "m.pth")
    assert recorded_task(tmp_path / "m.pth") is None
    sizes = dict(image_size=CONFIG.image_size, audio_size=CONFIG.audio_size, num_heads=2, fusion_num_heads=2,
                 num_fusion_tokens=CONFIG.num_fusion_tokens)
    loaded = [load(tmp_path / "m.pth", expect=task, recipe=CONFIG),
              load(tmp_path / "m.pth", expect=MODEL, official={**sizes, **({"decoder_num_heads": 2}
                                                                            if task == "pretrain" else {})})]
    for again in loaded:
        assert type(again) is type(model) and not again.training
        assert_same_weights(model, again)


@pytest.mark.parametrize("task", TASKS)
def test_encoder_weights_of_any_checkpoint(tmp_path, task):
    model = tiny(task)
    encoder = model if task == "encoder" else model.encoder
    save_pretrained(model, tmp_path / "m")
    sources = [(tmp_path / "m", CONFIG)]
    if task in OFFICIAL:
        export_official(model, tmp_path / "m.pth")
        sources.append((tmp_path / "m.pth", None))
    for source, config in sources:
        weights = load(source, expect=ENCODER_WEIGHTS, recipe=CONFIG)
        assert isinstance(weights, EncoderWeights) and weights.task == task
        assert (weights.config and EncoderConfig(**weights.config)) == config  # recorded by directories only
        assert set(weights.state) == set(encoder.state_dict())
        for key, tensor in encoder.state_dict().items():
            assert torch.equal(weights.state[key], tensor), key


def test_a_task_mismatch_is_a_checkpoint_error_naming_both(tmp_path):
    save_pretrained(tiny("encoder"), tmp_path / "enc")
    export_official(tiny("pretrain"), tmp_path / "pre.pth")
    with pytest.raises(CheckpointError, match="enc holds a 'encoder' model, not a 'classify' model; train one with "
                                              "`avfusion train classify RECIPE model.pretrained="):
        load(tmp_path / "enc", expect="classify")
    with pytest.raises(CheckpointError, match="pre.pth holds a 'pretrain' model, not a 'separate' model; train one"):
        load(tmp_path / "pre.pth", expect="separate", recipe=CONFIG)
    with pytest.raises(CheckpointError, match="holds a 'pretrain' model, not a 'encoder' model$"):
        load(tmp_path / "pre.pth", expect="encoder", recipe=CONFIG)


def test_what_does_not_apply_is_refused(tmp_path):
    save_pretrained(tiny("classify"), tmp_path / "cls")
    with pytest.raises(ConfigError, match="expect='detector': choose one of model, encoder_weights, encoder"):
        load(tmp_path / "cls", expect="detector")
    with pytest.raises(ConfigError, match=r"records its own configuration; \['image_size'\] apply to official"):
        load(tmp_path / "cls", official={"image_size": (32, 32)})
    with pytest.raises(ConfigError, match="builds no model"):
        load(tmp_path / "cls", expect=ENCODER_WEIGHTS, options={"num_classes": 3})
    wider = EncoderConfig(**{**CONFIG.to_dict(), "depth": 3})
    for expect in ("classify", ENCODER_WEIGHTS):
        with pytest.raises(CheckpointError, match="does not match the recipe's model section \\(depth: recipe 3, "
                                                  "checkpoint 2\\)"):
            load(tmp_path / "cls", expect=expect, recipe=wider)


def test_errors_of_an_official_file_name_it(tmp_path):
    export_official(tiny("classify"), tmp_path / "cls.pth")
    with pytest.raises(CheckpointError, match="cls.pth: the checkpoint has 4 fusion tokens but num_fusion_tokens"):
        load(tmp_path / "cls.pth")
    with pytest.raises(CheckpointError, match="cls.pth: cannot infer the stream head count for width 128"):
        load(tmp_path / "cls.pth", official={"num_fusion_tokens": (2, 1, 1)})
    torch.save({"state_dict": {"head.weight": torch.zeros(2)}}, tmp_path / "alien.pth")
    with pytest.raises(CheckpointError, match="alien.pth: checkpoint has no `encoder.\\*` keys"):
        load(tmp_path / "alien.pth", expect=ENCODER_WEIGHTS)


def test_save_writes_a_bare_module_as_weights_alone(tmp_path):
    """Any module's final weights: model.safetensors, written atomically; without a config.json it is no
    checkpoint `load` rebuilds (the engine's final/ of a non-avfusion model)."""
    from safetensors.torch import load_file

    module = torch.nn.Linear(3, 2)
    save(module, tmp_path / "final")
    assert sorted(p.name for p in (tmp_path / "final").iterdir()) == ["model.safetensors"]
    assert_same_weights(module, load_file(tmp_path / "final" / "model.safetensors"))
    with pytest.raises(CheckpointError, match="final: a directory without config.json"):
        load(tmp_path / "final")
    save(tiny("classify"), tmp_path / "cls")
    assert sorted(p.name for p in (tmp_path / "cls").iterdir()) == ["config.json", "model.safetensors"]

