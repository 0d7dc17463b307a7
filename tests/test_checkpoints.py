"""Checkpoint formats: official round trip, strict loading, our safetensors format, stream initialisation."""
from __future__ import annotations

import json

import pytest
import torch

import avfusion
from avfusion.checkpoints import export_official, load_stream_init, read_checkpoint, save_pretrained
from avfusion.errors import CheckpointError
from avfusion.models import AVMAE, Classifier, EarlyFusionEncoder, build_model, encoder_config
from tests.test_models_parity import tiny_kwargs

SMALL = dict(image_size=(32, 48), audio_size=(32, 32), embed_dim=32, depth=2, num_heads=2, fusion_num_heads=2,
             num_fusion_tokens=(2, 1, 1))


def test_official_round_trip_is_exact(official_tiny, tmp_path):
    original = official_tiny["cases"]["factorized_mmi/subset"]["checkpoint"]
    model = avfusion.load_official(original, **tiny_kwargs(official_tiny))
    path = tmp_path / "exported.pth"
    export_official(model, path, epoch=3)
    again = torch.load(path, weights_only=True)
    assert again["epoch"] == 3
    assert set(again["state_dict"]) == set(original["state_dict"])
    for key, tensor in original["state_dict"].items():
        assert torch.equal(again["state_dict"][key], tensor), key


@pytest.mark.parametrize("task,options", [("pretrain", dict(decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)),
                                          ("classify", dict(num_classes=5)),
                                          ("classify", dict(num_classes=3, linear_probe=True)),
                                          ("localize", dict(proj_dim=8, hidden_dim=16)),
                                          ("encoder", {})])
def test_save_and_from_pretrained(tmp_path, task, options):
    torch.manual_seed(0)
    model = build_model(task, avfusion.EncoderConfig(**SMALL), **options).eval()
    save_pretrained(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = avfusion.from_pretrained(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.options == model.options
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    image, audio = torch.randn(2, 3, 32, 48), torch.randn(2, 1, 32, 32)
    if task == "pretrain":
        noise = (torch.rand(2, 6), torch.rand(2, 4))
        assert torch.equal(model(image, audio, *noise).loss, loaded(image, audio, *noise).loss)
    elif task == "classify":
        assert torch.equal(model(image, audio).logits, loaded(image, audio).logits)
    elif task == "localize":
        assert torch.equal(model(image, audio).heatmap, loaded(image, audio).heatmap)
    else:
        assert torch.equal(model(image, audio).fusion, loaded(image, audio).fusion)


def test_save_pretrained_writes_no_temporary_files(tmp_path):
    save_pretrained(EarlyFusionEncoder(**SMALL), tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["format"] == "avfusion" and config["task"] == "encoder"


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        avfusion.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        avfusion.from_pretrained(tmp_path)


def test_strict_loading_lists_missing_and_unexpected_keys(official_tiny):
    state = dict(official_tiny["cases"]["factorized_mmi/all"]["checkpoint"]["state_dict"])
    del state["encoder.image.blocks.1.attn.qkv.bias"]
    state["encoder.image.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        avfusion.load_official({"state_dict": state}, **tiny_kwargs(official_tiny))
    message = str(info.value)
    assert "missing (1): encoder.image.blocks.1.attn.qkv.bias" in message
    assert "unexpected (1): encoder.image.extra.weight" in message


def test_unrecoverable_settings_are_clear_errors(official_tiny, tmp_path):
    state = official_tiny["cases"]["factorized_mmi/all"]["checkpoint"]
    kwargs = tiny_kwargs(official_tiny)
    with pytest.raises(CheckpointError, match="8 fusion tokens but num_fusion_tokens"):
        avfusion.load_official(state, **{**kwargs, "num_fusion_tokens": (16, 8, 8)})
    with pytest.raises(CheckpointError, match="pass the image_size"):
        avfusion.load_official(state, **{**kwargs, "image_size": (224, 224)})
    width = json.loads(official_tiny["config"])["embed_dim"]
    with pytest.raises(CheckpointError, match=f"head count for width {width}"):
        avfusion.load_official(state, **{**kwargs, "num_heads": None})
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        avfusion.load_official(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="junk.pth: cannot be read"):
        avfusion.load_official(tmp_path / "junk.pth")


def test_pickles_with_code_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))
    torch.save({"state_dict": {"x": Evil()}}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights-only"):
        read_checkpoint(tmp_path / "evil.pth")


def test_official_defaults_match_the_released_vit_b():
    """A ViT-B checkpoint's shapes alone give the released configuration (heads from the width)."""
    config = encoder_config("base", fusion_attn_ratio=0.25, fusion_mlp_ratio=1.0)
    with torch.device("meta"):
        model = AVMAE(EarlyFusionEncoder(config))
    from avfusion.checkpoints.official import infer_encoder_config, infer_task_options, to_official, to_ours
    state = to_official({k: torch.empty(v.shape) for k, v in model.state_dict().items()})
    assert "image_decoder_embed.weight" in state
    inferred = infer_encoder_config(to_ours(state))
    assert inferred == config
    assert infer_task_options("pretrain", to_ours(state)) == dict(decoder_embed_dim=512, decoder_depth=8,
                                                                   decoder_num_heads=16, decoder_mlp_ratio=4.0)


def test_stream_initialisation_from_mae_weights(tmp_path):
    """MAE-ImageNet layout: cls token and decoder dropped, positions recomputed for the target grid."""
    torch.manual_seed(0)
    source = EarlyFusionEncoder(**SMALL)
    mae = {f"{k}": v.clone() for k, v in source.image.state_dict().items() if k != "pos_embed"}
    mae.update(cls_token=torch.randn(1, 1, 32), pos_embed=torch.randn(1, 1 + 14 * 14, 32),
               mask_token=torch.zeros(1, 1, 32), **{"decoder_embed.weight": torch.zeros(16, 32)})
    torch.save({"model": mae}, tmp_path / "mae.pth")
    target = EarlyFusionEncoder(**SMALL)
    before = target.image.pos_embed.clone()
    load_stream_init(target.image, tmp_path / "mae.pth")
    assert torch.equal(target.image.pos_embed, before)
    assert torch.equal(target.image.blocks[1].mlp.fc2.weight, source.image.blocks[1].mlp.fc2.weight)
    del mae["norm.weight"]
    torch.save({"model": mae}, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="missing \\(1\\): norm.weight"):
        load_stream_init(target.image, tmp_path / "broken.pth")


def test_pretraining_overfits_one_batch():
    torch.manual_seed(0)
    model = AVMAE(EarlyFusionEncoder(**SMALL), decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
    image, audio = torch.randn(4, 3, 32, 48), torch.randn(4, 1, 32, 32)
    noise = (torch.rand(4, 6, generator=torch.Generator().manual_seed(1)),
             torch.rand(4, 4, generator=torch.Generator().manual_seed(2)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(80):
        loss = model(image, audio, *noise).loss
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 10, (first, loss.item())


def test_masking_needs_explicit_randomness():
    model = AVMAE(EarlyFusionEncoder(**SMALL), decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    image, audio = torch.randn(2, 3, 32, 48), torch.randn(2, 1, 32, 32)
    with pytest.raises(ValueError, match="needs masking noise"):
        model(image, audio)
    a = model(image, audio, generator=torch.Generator().manual_seed(5))
    b = model(image, audio, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.mask_image, b.mask_image) and torch.equal(a.loss, b.loss)
    assert a.mask_image.sum(1).tolist() == [6 - int(6 * 0.25)] * 2


def test_linear_probe_freezes_the_encoder():
    model = Classifier(EarlyFusionEncoder(**SMALL), num_classes=4, linear_probe=True).train()
    assert not model.encoder.training and model.image_norm.training
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{k}_head.{w}" for k in ("image", "audio", "fusion") for w in ("weight", "bias")}
    out = model(torch.randn(3, 3, 32, 48), torch.randn(3, 1, 32, 32))
    out.logits.sum().backward()
    assert model.encoder.fusion_tokens.grad is None


def test_detect_task_knows_every_task_model():
    """Every task's model is recognised from its parameter names alone (the localiser used to read as 'encoder')."""
    from avfusion.checkpoints.official import detect_task
    from avfusion.models import EncoderConfig, build_model

    config = EncoderConfig(image_size=(32, 32), audio_size=(32, 32), patch_size=16, embed_dim=128, depth=1,
                           num_heads=2, fusion_layers="all", num_fusion_tokens=(2, 1, 1), fusion_num_heads=2)
    for task, options in (("pretrain", {"decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2}),
                          ("classify", {"num_classes": 3}), ("localize", {"proj_dim": 8, "hidden_dim": 16}),
                          ("separate", {}), ("segment", {"num_classes": 1}), ("encoder", {})):
        model = build_model(task, config, **options)
        assert detect_task(model.state_dict() if task != "encoder" else
                           {f"encoder.{k}": v for k, v in model.state_dict().items()}) == task, task


def test_what_kind_of_checkpoint_a_path_is_is_decided_in_one_place(tmp_path):
    """A save_pretrained directory, a state-dict file (official or engine), or a clear error for anything else;
    every loader (encoder init, task model, inference) asks the same function."""
    from avfusion.checkpoints import ENCODER_WEIGHTS, MODEL, load
    from avfusion.checkpoints.kinds import PRETRAINED, STATE_FILE, checkpoint_kind
    from avfusion.inference.loading import load_model

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    torch.save({"model": {}}, tmp_path / "step_00000001.pt")
    assert checkpoint_kind(tmp_path / "run") == PRETRAINED
    assert checkpoint_kind(tmp_path / "step_00000001.pt") == STATE_FILE
    (tmp_path / "empty").mkdir()
    loaders = (checkpoint_kind, lambda p: load(p, expect=ENCODER_WEIGHTS), lambda p: load(p, expect=MODEL),
               lambda p: load(p, expect="classify"), load_model)
    for loader in loaders:
        with pytest.raises(CheckpointError, match="empty: a directory without config.json"):
            loader(tmp_path / "empty")
        with pytest.raises(CheckpointError, match="missing: no such checkpoint"):
            loader(tmp_path / "missing")
