"""Segmentation model: parity with the official `AVSegmSimple`, its losses, other configurations.

The reference vectors were produced in eval mode: the official state dicts carry untouched BatchNorm
statistics and only eval mode reproduces the stored logits.
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
from avfusion.models.segmentation import Predictor, Segmenter, segmentation_blocks, segmentation_loss
from tests.conftest import assert_close_rel


@pytest.mark.parametrize("case", ["segmentation/classes=1", "segmentation/classes=5"])
def test_parity_with_official(official_tiny_segmentation, case):
    ref = official_tiny_segmentation["heads"][case]
    config = json.loads(official_tiny_segmentation["config"])
    inputs = official_tiny_segmentation["inputs"]
    model = avfusion.load_official(
        {"state_dict": ref["state_dict"]}, image_size=config["image_size"], audio_size=config["audio_size"],
        num_heads=ref["encoder"]["num_heads"], fusion_num_heads=config["fusion_heads"],
        num_fusion_tokens=config["fusion_tokens"])
    assert isinstance(model, Segmenter) and not model.training  # references were made in eval mode
    assert (model.num_classes, model.encoder.embed_dim, model.encoder.depth) == (
        ref["num_classes"], ref["encoder"]["embed_dim"], ref["encoder"]["depth"])
    with torch.no_grad():
        out = model(inputs["image"], inputs["audio"], ref["gt"])
        assert model(inputs["image"], inputs["audio"]).loss is None
    assert_close_rel(out.logits, ref["logits"], what=f"{case} logits")
    assert_close_rel(out.loss, ref["loss"], what=f"{case} loss")


def test_block_selection_matches_official_linspace():
    assert segmentation_blocks(12) == [0, 3, 7, 11]
    assert segmentation_blocks(2) == [0, 0, 0, 1]
    for depth in range(1, 49):
        expected = np.linspace(0, depth - 1, 4, endpoint=True).astype(int).tolist()
        assert segmentation_blocks(depth) == expected, depth


def _encoder(embed_dim=160, depth=5, image_size=(48, 80), patch_size=16):
    return EarlyFusionEncoder(EncoderConfig(
        image_size=image_size, audio_size=(32, 48), patch_size=patch_size, embed_dim=embed_dim, depth=depth,
        num_heads=4, fusion_layers="1-3" if depth > 3 else "all", num_fusion_tokens=(2, 1, 1),
        fusion_num_heads=4))


def test_decoder_reads_only_the_selected_blocks():
    torch.manual_seed(0)
    model = Segmenter(_encoder(embed_dim=128, depth=12, image_size=(32, 48)), num_classes=2).eval()
    layers = [torch.randn(2, 6, 128) for _ in range(12)]
    audio_last = torch.randn(2, 6, 128)
    selected = set(segmentation_blocks(12))
    poisoned = [x if i in selected else torch.full_like(x, float("nan")) for i, x in enumerate(layers)]
    with torch.no_grad():
        out = model.decode(poisoned, audio_last, (2, 3))
        assert out.shape == (2, 2, 32, 48) and torch.isfinite(out).all()
        for i in selected:
            probe = list(layers)
            probe[i] = torch.full_like(layers[i], float("nan"))
            assert torch.isnan(model.decode(probe, audio_last, (2, 3))).any(), f"block {i} unused"


def test_other_configuration_runs_and_trains():
    """Width 160 (decoder widths 160, 128, 128, 128), 5 blocks, rectangular 3x5 image grid, 3 classes."""
    torch.manual_seed(0)
    model = Segmenter(_encoder(), num_classes=3)
    assert [m.out_channels for m in model.predictor if isinstance(m, torch.nn.Conv2d)] == [128, 3]
    image, audio = torch.randn(2, 3, 48, 80), torch.randn(2, 1, 32, 48)
    target = torch.randint(0, 3, (2, 48, 80))
    decoder = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    out = model(image, audio, target)
    assert out.logits.shape == (2, 3, 48, 80) and math.isfinite(out.loss.item())
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in decoder)
    with torch.no_grad():  # a small gradient step lowers the loss on the same batch
        for p in decoder:
            p -= 1e-3 * p.grad
    assert model(image, audio, target).loss.item() < out.loss.item()


def test_losses_and_target_checks():
    torch.manual_seed(0)
    logits1 = torch.randn(2, 1, 4, 4)
    mask = torch.rand(2, 4, 4) > 0.5
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits1[:, 0], mask.float())
    assert segmentation_loss(logits1, mask).item() == pytest.approx(expected.item())  # bool accepted
    logits5 = torch.randn(2, 5, 4, 4)
    labels = torch.randint(0, 5, (2, 4, 4))
    labels[0, 0, 0] = -100  # ignored
    p = torch.log_softmax(logits5, 1).gather(1, labels.clamp(min=0)[:, None])[:, 0]
    by_hand = -p.flatten()[1:].mean()
    assert segmentation_loss(logits5, labels).item() == pytest.approx(by_hand.item(), rel=1e-6)
    with pytest.raises(DataError, match="class indices"):
        segmentation_loss(logits5, labels.float())
    with pytest.raises(DataError, match="does not match"):
        segmentation_loss(logits5, labels[:, :2])


def test_configuration_errors():
    with pytest.raises(ConfigError, match="embed_dim >= min_width 128"):
        Segmenter(_encoder(embed_dim=64, depth=2))
    with pytest.raises(ConfigError, match="min_width must be >= 1"):
        Segmenter(_encoder(embed_dim=128, depth=2), min_width=0)
    with pytest.raises(ConfigError, match="num_classes"):
        Segmenter(_encoder(embed_dim=128, depth=2), num_classes=0)
    with pytest.raises(ConfigError, match="patch size"):
        Segmenter(_encoder(embed_dim=128, depth=2, image_size=(32, 32), patch_size=8))


def test_round_trips(official_tiny_segmentation, tmp_path):
    """Ours (safetensors) and official formats both reproduce the model exactly."""
    ref = official_tiny_segmentation["heads"]["segmentation/classes=5"]
    config = json.loads(official_tiny_segmentation["config"])
    model = avfusion.load_official(ref["state_dict"], image_size=config["image_size"], audio_size=config["audio_size"],
                                   num_heads=ref["encoder"]["num_heads"], fusion_num_heads=config["fusion_heads"],
                                   num_fusion_tokens=config["fusion_tokens"])
    save_pretrained(model, tmp_path / "segm")
    again = avfusion.from_pretrained(tmp_path / "segm").eval()
    assert isinstance(again, Segmenter) and again.num_classes == 5
    inputs = official_tiny_segmentation["inputs"]
    with torch.no_grad():
        assert torch.equal(again(inputs["image"], inputs["audio"]).logits, model(inputs["image"], inputs["audio"]).logits)
    exported = avfusion.export_official(model)["state_dict"]
    assert exported.keys() == ref["state_dict"].keys()
    assert all(torch.equal(exported[k], v) for k, v in ref["state_dict"].items())


def test_a_lower_width_floor_shrinks_the_decoder_and_survives_save_and_load(tmp_path):
    """min_width 32 at D = 128: scales 128, 64, 32, 32 wide (official floor 128: all 128); the logits keep
    their resolution, and the option is saved with the model."""
    torch.manual_seed(0)
    small = Segmenter(_encoder(embed_dim=128, depth=2), min_width=32).eval()
    assert [m.conv.double_conv[0].out_channels for m in small.up] == [64, 32, 32]
    assert [m.conv.double_conv[0].out_channels for m in Segmenter(_encoder(embed_dim=128, depth=2)).up] == [128] * 3
    image, audio = torch.randn(2, 3, 48, 80), torch.randn(2, 1, 32, 48)
    with torch.no_grad():
        logits = small(image, audio).logits
    assert logits.shape == (2, 1, 48, 80)
    save_pretrained(small, tmp_path / "seg")
    again = avfusion.from_pretrained(tmp_path / "seg").eval()
    assert again.options["min_width"] == 32
    with torch.no_grad():
        assert torch.equal(again(image, audio).logits, logits)


@pytest.mark.parametrize("num_classes, folds", [(1, True), (3, True), (8, False)])
def test_folded_predictor_computes_the_three_layers_and_their_gradients(num_classes, folds):
    """The predictor folds its second conv into its first (nothing non-linear between them) when that
    upsamples fewer channels (9 x classes < hidden): its output and every gradient equal the plain
    conv -> bilinear x2 -> conv, including at the zero-padded border."""
    torch.manual_seed(0)
    predictor = Predictor(8, num_classes, hidden=64)
    assert predictor.folds is folds
    for p in predictor.parameters():
        torch.nn.init.normal_(p)  # non-zero biases, so the bias folding is exercised
    x = torch.randn(2, 8, 5, 7, requires_grad=True)
    folded, plain = predictor(x), predictor.plain(x)
    assert folded.shape == (2, num_classes, 10, 14)
    assert_close_rel(folded, plain, 1e-5)
    grad = torch.randn_like(plain)
    inputs = [x, *predictor.parameters()]
    for a, b in zip(torch.autograd.grad(folded, inputs, grad), torch.autograd.grad(plain, inputs, grad)):
        assert_close_rel(a, b, 1e-5)
    assert set(predictor.state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias"}  # the official keys
