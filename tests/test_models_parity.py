"""Parity with the official implementation: every stored output, through `load_official`."""
from __future__ import annotations

import json

import pytest
import torch

import avfusion
from avfusion.models import AVMAE, Classifier, EarlyFusionEncoder
from tests.conftest import assert_close_rel

CASES = [f"{arch}/{layers}" for arch in ("factorized_mmi", "dense_mmi", "token") for layers in ("all", "subset")]
FUSION_TYPE = {"factorized_mmi": "factorized", "dense_mmi": "dense", "token": "token"}


def tiny_kwargs(reference) -> dict:
    config = json.loads(reference["config"])
    return dict(image_size=config["image_size"], audio_size=config["audio_size"], num_heads=config["num_heads"],
                fusion_num_heads=config["fusion_heads"], decoder_num_heads=config["dec_heads"],
                num_fusion_tokens=config["fusion_tokens"])


@pytest.fixture(scope="module")
def models(official_tiny):
    return {name: avfusion.load_official(official_tiny["cases"][name]["checkpoint"], **tiny_kwargs(official_tiny))
            for name in CASES}


@pytest.mark.parametrize("name", CASES)
def test_configuration_inferred_from_shapes(models, official_tiny, name):
    model = models[name]
    assert isinstance(model, AVMAE)
    config = model.encoder.config
    ref = json.loads(official_tiny["config"])
    arch, layers = name.split("/")
    layers = ref["layers_subset"] if layers == "subset" else layers
    assert (config.embed_dim, config.depth, config.fusion_type, config.fusion_layers) == (
        ref["embed_dim"], ref["depth"], FUSION_TYPE[arch], layers)
    assert config.mlp_ratio == 4.0 and config.fusion_mlp_ratio == 1.0 and config.fusion_attn_ratio == 0.25
    assert (model.options["decoder_embed_dim"], model.options["decoder_depth"]) == (ref["dec_dim"], ref["dec_depth"])


@pytest.mark.parametrize("name", CASES)
def test_encoder_full_and_per_layer(models, official_tiny, name):
    case, inputs = official_tiny["cases"][name], official_tiny["inputs"]
    with torch.no_grad():
        out = models[name].encoder(inputs["image"], inputs["audio"], return_layers=True)
    for kind in ("image", "audio", "fusion"):
        assert_close_rel(getattr(out, kind), case["encoder_full"][kind], what=f"{name} final {kind}")
        for i, layer in enumerate(case["encoder_layers"]):
            assert_close_rel(getattr(out.layers[i], kind), layer[kind], what=f"{name} block {i} {kind}")


@pytest.mark.parametrize("name", CASES)
def test_encoder_masked(models, official_tiny, name):
    from avfusion.models.pretrain import Masking
    case, inputs = official_tiny["cases"][name], official_tiny["inputs"]
    keep_image = Masking.from_noise(case["noise"]["image"], 0.75).ids_keep
    keep_audio = Masking.from_noise(case["noise"]["audio"], 0.8).ids_keep
    with torch.no_grad():
        out = models[name].encoder(inputs["image"], inputs["audio"], keep_image, keep_audio)
    for kind in ("image", "audio", "fusion"):
        assert_close_rel(getattr(out, kind), case["encoder_masked"][kind], what=f"{name} masked {kind}")


@pytest.mark.parametrize("name", CASES)
def test_pretraining_outputs(models, official_tiny, name):
    case, inputs = official_tiny["cases"][name], official_tiny["inputs"]
    with torch.no_grad():
        out = models[name](inputs["image"], inputs["audio"], case["noise"]["image"], case["noise"]["audio"])
    for key, ref in case["pretrain"].items():
        assert_close_rel(getattr(out, key), ref, what=f"{name} {key}")
    assert_close_rel(out.loss, case["pretrain"]["loss_image"] + case["pretrain"]["loss_audio"], what="loss sum")


def test_classifier(official_tiny):
    ref = official_tiny["heads"]["classifier"]
    model = avfusion.load_official({"state_dict": ref["state_dict"]}, **tiny_kwargs(official_tiny))
    assert isinstance(model, Classifier) and model.num_classes == ref["num_classes"]
    with torch.no_grad():
        out = model(official_tiny["inputs"]["image"], official_tiny["inputs"]["audio"])
    for kind in ("image", "audio", "fusion"):
        assert_close_rel(getattr(out, f"logits_{kind}"), ref[f"logits_{kind}"], what=f"classifier {kind}")
    assert_close_rel(out.logits, (ref["logits_image"] + ref["logits_audio"] + ref["logits_fusion"]) / 3, what="joint")


def test_bare_encoder_from_encoder_keys(official_tiny):
    state = official_tiny["cases"]["factorized_mmi/all"]["checkpoint"]["state_dict"]
    encoder_only = {k: v for k, v in state.items() if k.startswith("encoder.")}
    model = avfusion.load_official({"state_dict": encoder_only}, **tiny_kwargs(official_tiny))
    assert isinstance(model, EarlyFusionEncoder)
    with torch.no_grad():
        out = model(official_tiny["inputs"]["image"], official_tiny["inputs"]["audio"])
    assert_close_rel(out.fusion, official_tiny["cases"]["factorized_mmi/all"]["encoder_full"]["fusion"])
