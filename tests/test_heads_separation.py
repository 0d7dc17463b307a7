"""Separation model: parity with the official `AVSrcSep`, its target masks and loss, other configurations.

The reference vectors were produced in eval mode: the official state dicts carry untouched BatchNorm
statistics (mean 0, var 1, num_batches_tracked 0) and only eval mode reproduces the stored logits
(train mode normalises with batch statistics and differs by O(1)).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import avfusion
from avfusion.checkpoints import save_pretrained
from avfusion.errors import ConfigError, DataError
from avfusion.models.encoder import EarlyFusionEncoder, EncoderConfig
from avfusion.models import build_model, encoder_config
from avfusion.models.separation import (SeparationDecoder, Separator, separation_blocks, separation_loss,
                                        separation_target)
from tests.conftest import assert_close_rel

VARIANTS = {
    "separation/weighted=True,binary=False": dict(weighted_loss=True, binary_mask=False),
    "separation/weighted=False,binary=True": dict(weighted_loss=False, binary_mask=True),
}


def tiny_kwargs(reference) -> dict:
    config = json.loads(reference["config"])
    return dict(image_size=config["image_size"], audio_size=config["audio_size"], num_heads=config["num_heads"],
                fusion_num_heads=config["fusion_heads"], num_fusion_tokens=config["fusion_tokens"])


@pytest.mark.parametrize("case", sorted(VARIANTS))
def test_parity_with_official(official_tiny, case):
    ref = official_tiny["heads"][case]
    model = avfusion.load_official({"state_dict": ref["state_dict"]}, **tiny_kwargs(official_tiny), **VARIANTS[case])
    assert isinstance(model, Separator) and not model.training  # references were made in eval mode
    assert model.encoder.fusion_layers == list(range(json.loads(official_tiny["config"])["depth"]))
    with torch.no_grad():
        out = model(official_tiny["inputs"]["image"], ref["audio_mix"], ref["audio_gt"])
    assert out.mask_logits.shape == (2, 1, 32, 48)
    assert_close_rel(out.mask_logits, ref["logits_mask"], what=f"{case} mask logits")
    assert_close_rel(out.loss, ref["loss"], what=f"{case} loss")
    assert torch.allclose(out.target_mask, ref["gt_masks"], rtol=1e-5, atol=1e-7), f"{case} target mask"
    with torch.no_grad():
        without_target = model(official_tiny["inputs"]["image"], ref["audio_mix"])
    assert without_target.loss is None and without_target.target_mask is None
    assert torch.equal(without_target.mask_logits, out.mask_logits)


def test_block_selection_matches_official_linspace():
    assert separation_blocks(12) == [11, 8, 5, 2, 0]
    assert separation_blocks(3) == [2, 1, 1, 0, 0]
    for depth in range(1, 49):
        expected = np.linspace(0, depth - 1, 5, endpoint=True)[::-1].astype(int).tolist()
        assert separation_blocks(depth) == expected, depth


def test_target_masks_by_hand():
    # Source powers 3, 1, 0.5 against mixture powers 1, 1, 2 (log10 inputs).
    target = torch.log10(torch.tensor([3.0, 1.0, 0.5])).view(1, 1, 1, 3)
    mix = torch.log10(torch.tensor([1.0, 1.0, 2.0])).view(1, 1, 1, 3)
    ratio = separation_target(mix, target, binary_mask=False).flatten()
    expected = torch.tensor([3 / (4 + 1e-5), 1 / (2 + 1e-5), 0.5 / (2.5 + 1e-5)])
    assert torch.allclose(ratio, expected, rtol=1e-6)
    assert separation_target(mix, target, binary_mask=True).flatten().tolist() == [1.0, 0.0, 0.0]


def test_mix_and_separate_targets_by_hand():
    # Against the other source (powers 1, 3, 0.5) instead of the mixture: the ideal ratio and binary masks.
    target = torch.log10(torch.tensor([3.0, 1.0, 0.5])).view(1, 1, 1, 3)
    other = torch.log10(torch.tensor([1.0, 3.0, 0.5])).view(1, 1, 1, 3)
    mix = torch.log10(torch.tensor([4.0, 4.0, 1.0])).view(1, 1, 1, 3)
    ratio = separation_target(mix, target, binary_mask=False, audio_other=other).flatten()
    assert torch.allclose(ratio, torch.tensor([3 / (4 + 1e-5), 1 / (4 + 1e-5), 0.5 / (1 + 1e-5)]), rtol=1e-6)
    assert separation_target(mix, target, True, other).flatten().tolist() == [1.0, 0.0, 0.0]


def test_weighted_loss_by_hand():
    logits = torch.tensor([0.3, -1.2]).view(1, 1, 1, 2)
    target = torch.log10(torch.tensor([3.0, 0.5])).view(1, 1, 1, 2)
    mix = torch.log10(torch.tensor([1.0, 1e6])).view(1, 1, 1, 2)  # second weight clamps at 10
    loss, mask = separation_loss(logits, mix, target, weighted_loss=True, binary_mask=False)
    weights = [math.log1p(1.0), 10.0]
    p = torch.sigmoid(logits).flatten().double()
    y = mask.flatten().double()
    bce = -(y * p.log() + (1 - y) * (1 - p).log())
    assert loss.item() == pytest.approx(((bce * torch.tensor(weights, dtype=torch.float64)).mean()).item(), rel=1e-5)
    unweighted, _ = separation_loss(logits, mix, target, weighted_loss=False, binary_mask=False)
    assert unweighted.item() == pytest.approx(bce.mean().item(), rel=1e-5)


def test_decoder_reads_only_the_selected_blocks():
    torch.manual_seed(0)
    decoder = SeparationDecoder(32).eval()
    grid = (2, 3)
    layers = [torch.randn(2, 6, 32) for _ in range(12)]
    image_last = torch.randn(2, 4, 32)
    selected = set(separation_blocks(12))
    poisoned = [x if i in selected else torch.full_like(x, float("nan")) for i, x in enumerate(layers)]
    with torch.no_grad():
        out = decoder(poisoned, image_last, grid)
        assert out.shape == (2, 1, 32, 48) and torch.isfinite(out).all()
        for i in selected:
            probe = list(layers)
            probe[i] = torch.full_like(layers[i], float("nan"))
            assert torch.isnan(decoder(probe, image_last, grid)).any(), f"block {i} unused"


def test_other_configuration_runs_and_trains():
    """12 blocks, width 32, fusion at some layers, rectangular image and a 3x5 audio grid."""
    torch.manual_seed(0)
    encoder = EarlyFusionEncoder(EncoderConfig(
        image_size=(32, 48), audio_size=(48, 80), embed_dim=32, depth=12, num_heads=2,
        fusion_layers="0-5-11", num_fusion_tokens=(2, 1, 1), fusion_num_heads=2))
    model = Separator(encoder, weighted_loss=True, binary_mask=False)
    image = torch.randn(2, 3, 32, 48)
    mix, source = torch.randn(2, 1, 48, 80), torch.randn(2, 1, 48, 80) - 0.5
    out = model(image, mix, source)
    assert out.mask_logits.shape == (2, 1, 48, 80) and math.isfinite(out.loss.item())
    out.loss.backward()
    decoder = list(model.avss_decoder.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in decoder)
    with torch.no_grad():  # a small gradient step lowers the loss on the same batch
        for p in decoder:
            p -= 1e-3 * p.grad
    assert model(image, mix, source).loss.item() < out.loss.item()


def test_configuration_errors():
    with pytest.raises(ConfigError, match="divisible by 16"):
        Separator(EarlyFusionEncoder(EncoderConfig(image_size=(32, 32), audio_size=(32, 32), embed_dim=40,
                                                   depth=1, num_heads=2, fusion_num_heads=2,
                                                   num_fusion_tokens=(2, 1, 1))))
    with pytest.raises(ConfigError, match="patch size"):
        Separator(EarlyFusionEncoder(EncoderConfig(image_size=(32, 32), audio_size=(32, 32), patch_size=8,
                                                   embed_dim=32, depth=1, num_heads=2, fusion_num_heads=2,
                                                   num_fusion_tokens=(2, 1, 1))))
    mix = torch.zeros(1, 1, 32, 48)
    with pytest.raises(DataError, match="does not match"):
        separation_loss(torch.zeros(1, 1, 32, 48), mix, torch.zeros(1, 1, 32, 32), True, False)


def test_round_trips(official_tiny, tmp_path):
    """Ours (safetensors) and official formats both reproduce the model and its loss options exactly."""
    ref = official_tiny["heads"]["separation/weighted=False,binary=True"]
    model = avfusion.load_official(ref["state_dict"], **tiny_kwargs(official_tiny), weighted_loss=False,
                                   binary_mask=True)
    save_pretrained(model, tmp_path / "sep")
    again = avfusion.from_pretrained(tmp_path / "sep").eval()
    assert isinstance(again, Separator) and again.options == dict(weighted_loss=False, binary_mask=True, head="official",
                                                                     mask_reference="mixture", freeze_encoder=False)
    image = official_tiny["inputs"]["image"]
    with torch.no_grad():
        assert torch.equal(again(image, ref["audio_mix"]).mask_logits, model(image, ref["audio_mix"]).mask_logits)
    exported = avfusion.export_official(model)["state_dict"]
    assert exported.keys() == ref["state_dict"].keys()
    assert all(torch.equal(exported[k], v) for k, v in ref["state_dict"].items())


def test_temporal_head_round_trip_refusals_and_frozen_encoder(tmp_path):
    """The temporal head: full-resolution masks, saved and rebuilt with its options, recognised in a state
    dict, refused by the official layout; a frozen encoder gets no gradient and stays in eval mode."""
    from avfusion.checkpoints.official import detect_task
    from avfusion.errors import CheckpointError

    cfg = encoder_config("tiny", depth=2, image_size=(32, 32), audio_size=(64, 64), fusion_num_heads=3,
                         drop_path=0.1)
    model = build_model("separate", cfg, head="temporal", mask_reference="sources", freeze_encoder=True)
    image, mix = torch.randn(3, 3, 32, 32), torch.randn(3, 1, 64, 64)
    target, other = torch.randn(3, 1, 64, 64), torch.randn(3, 1, 64, 64)
    model.train()
    assert not model.encoder.training and model.temporal_decoder.training
    out = model(image, mix, target, other)
    assert out.mask_logits.shape == (3, 1, 64, 64)
    out.loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.temporal_decoder.pred.weight.grad is not None
    with pytest.raises(DataError, match="pass audio_other"):
        model(image, mix, target)
    features = model.features(image, mix)
    assert torch.allclose(model(image, mix, features=features).mask_logits, model(image, mix).mask_logits)
    save_pretrained(model, tmp_path / "sep")
    again = avfusion.from_pretrained(tmp_path / "sep").eval()
    assert again.options["head"] == "temporal" and again.options["mask_reference"] == "sources"
    model.eval()
    with torch.no_grad():
        assert torch.equal(again(image, mix).mask_logits, model(image, mix).mask_logits)
    assert detect_task(model.state_dict()) == "separate"
    with pytest.raises(CheckpointError, match="temporal"):
        avfusion.export_official(model)
    with pytest.raises(ConfigError, match="head must be one of"):
        build_model("separate", cfg, head="gru")
