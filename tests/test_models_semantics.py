"""The model on configurations the official fixtures do not contain, against a naive second
implementation of the model of docs/model.md (fresh random weights, rectangular grids, other widths, heads and ratios)."""
from __future__ import annotations

import pytest
import torch

from avfusion.checkpoints.official import export_official
from avfusion.models import EarlyFusionEncoder
from avfusion.models.encoder import parse_fusion_layers
from avfusion.models.fusion import DenseInteraction, FactorizedInteraction
from avfusion.models.layers import set_attention_impl, sincos_pos_embed_2d
from avfusion.models.pairwise_reference import materialised_dense, materialised_factorized
from tests import naive_reference as naive
from tests.conftest import assert_close_rel

CONFIGS = [
    dict(image_size=(48, 80), audio_size=(32, 64), embed_dim=48, depth=3, num_heads=3, fusion_type="factorized",
         fusion_layers="0-2", num_fusion_tokens=(3, 2, 4), fusion_num_heads=2, fusion_attn_ratio=0.5, fusion_mlp_ratio=2.0),
    dict(image_size=(32, 48), audio_size=(48, 32), embed_dim=32, depth=2, num_heads=2, fusion_type="dense",
         fusion_layers="all", num_fusion_tokens=(2, 1, 1), fusion_num_heads=4, fusion_attn_ratio=1.0, fusion_mlp_ratio=4.0),
    dict(image_size=(64, 32), audio_size=(16, 96), embed_dim=40, depth=2, num_heads=5, mlp_ratio=2.0, fusion_type="token",
         fusion_layers="1", num_fusion_tokens=(4, 2, 2), fusion_num_heads=2, fusion_attn_ratio=0.5),
    dict(image_size=(32, 32), audio_size=(32, 32), embed_dim=32, depth=2, num_heads=4, fusion_type="none"),
]


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Perturb every parameter and buffer so that biases and norms are non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=g) * 0.2)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c["fusion_type"])
def test_encoder_matches_naive_reference(config):
    torch.manual_seed(0)
    model = EarlyFusionEncoder(**config).eval()
    randomise(model, 1)
    sd = export_official(model)["state_dict"]
    g = torch.Generator().manual_seed(2)
    image = torch.randn(2, 3, *config["image_size"], generator=g)
    audio = torch.randn(2, 1, *config["audio_size"], generator=g)
    layers = set(parse_fusion_layers(config.get("fusion_layers", "all"), config["depth"])) if config["fusion_type"] != "none" else set()
    args = (config["depth"], config["num_heads"], config.get("fusion_num_heads", 12), config["fusion_type"], layers,
            config.get("num_fusion_tokens", (16, 8, 8)))
    with torch.no_grad():
        out = model(image, audio, return_layers=True)
        (v, a, m), per_layer = naive.encoder(sd, image, audio, *args)
    for ours, ref, what in ((out.image, v, "image"), (out.audio, a, "audio"), (out.fusion, m, "fusion")):
        assert_close_rel(ours, ref, what=what)
    for i, (lv, la, lm) in enumerate(per_layer):
        assert_close_rel(out.layers[i].fusion, lm, what=f"block {i} fusion")
        assert_close_rel(out.layers[i].image, lv, what=f"block {i} image")
    # masked: keep a random subset of each stream
    keep_v = torch.stack([torch.randperm(v.shape[1], generator=g)[:3] for _ in range(2)])
    keep_a = torch.stack([torch.randperm(a.shape[1], generator=g)[:2] for _ in range(2)])
    with torch.no_grad():
        out = model(image, audio, keep_v, keep_a)
        (v, a, m), _ = naive.encoder(sd, image, audio, *args, keep=(keep_v, keep_a))
    assert_close_rel(out.fusion, m, what="masked fusion")
    assert_close_rel(out.audio, a, what="masked audio")


@pytest.mark.parametrize("kind", ["dense", "factorized"])
@pytest.mark.parametrize("sizes", [(196, 96), (7, 13)])
def test_linear_cost_pairwise_attention_is_exact(kind, sizes):
    """docs/model.md, exact dense interactions: the factorised softmax equals the softmax over materialised pairs (float32 rounding)."""
    torch.manual_seed(3)
    D, H = 64, 4
    if kind == "dense":
        block = DenseInteraction(D, H, attn_ratio=0.5)
        reference = materialised_dense
    else:
        block = FactorizedInteraction(D, H, (4, 3, 5), attn_ratio=0.25)
        reference = materialised_factorized
    randomise(block, 4)
    m, image, audio = torch.randn(2, 12, D), torch.randn(2, sizes[0], D) * 2, torch.randn(2, sizes[1], D) * 2
    with torch.no_grad():
        ours, ref = block(m, image, audio), reference(block, m, image, audio)
        assert_close_rel(ours, ref, tol=1e-5, what=f"{kind} pairwise, float32")
        # in float64 the two agree to ~1e-15: the equality is exact, not an approximation
        block64 = block.double()
        ours, ref = (fn(block64, m.double(), image.double(), audio.double())
                     for fn in (lambda b, *x: b(*x), reference))
        assert_close_rel(ours, ref, tol=1e-12, what=f"{kind} pairwise, float64")
    # gradients agree too (float64, so that only the formula is compared)
    m64 = m.double().requires_grad_(True)
    g1 = torch.autograd.grad(block64(m64, image.double(), audio.double()).square().sum(), m64)[0]
    g2 = torch.autograd.grad(reference(block64, m64, image.double(), audio.double()).square().sum(), m64)[0]
    assert_close_rel(g1, g2, tol=1e-10, what="gradient")


def test_sincos_positions_by_hand():
    # D=4: omega = [1, 1/100]; token (r, c) = [sin c, sin c/100, cos c, cos c/100, sin r, sin r/100, cos r, cos r/100]
    pe = sincos_pos_embed_2d(8, (2, 3))
    import math
    r, c = 1, 2
    omega = [1.0, 1 / 100]
    expected = [math.sin(c * w) for w in omega] + [math.cos(c * w) for w in omega] + \
               [math.sin(r * w) for w in omega] + [math.cos(r * w) for w in omega]
    assert pe.shape == (6, 8)
    assert torch.allclose(pe[r * 3 + c], torch.tensor(expected), atol=1e-7)


def test_sdpa_and_math_attention_agree():
    torch.manual_seed(0)
    model = EarlyFusionEncoder(**CONFIGS[0]).eval()
    image, audio = torch.randn(2, 3, 48, 80), torch.randn(2, 1, 32, 64)
    with torch.no_grad():
        a = model(image, audio).fusion
        set_attention_impl(model, "math")
        b = model(image, audio).fusion
    assert_close_rel(a, b, tol=1e-5)


def test_fusion_layers_parsing():
    assert parse_fusion_layers("all", 4) == [0, 1, 2, 3]
    assert parse_fusion_layers("none", 4) == []
    assert parse_fusion_layers(2, 4) == [2]
    assert parse_fusion_layers("0-4-8", 12) == [0, 4, 8]
    with pytest.raises(ValueError, match="indices must lie"):
        parse_fusion_layers("0-12", 12)
    with pytest.raises(ValueError, match="use 'all'"):
        parse_fusion_layers("first", 12)


def _materialised_pair_weights(q, keys, heads, scale):
    B, Nq, _ = q.shape
    qh = q.reshape(B, Nq, heads, -1).transpose(1, 2)
    kh = keys.reshape(B, keys.shape[1], heads, -1).transpose(1, 2)
    return (qh @ kh.transpose(-2, -1) * scale).softmax(-1)  # (B, H, Nq, Npairs)


@pytest.mark.parametrize("kind", ["dense", "factorized", "token"])
def test_image_attention_is_the_marginal_over_image_tokens(kind):
    """The localisation read-out equals the materialised pair attention summed over the audio side."""
    torch.manual_seed(5)
    D, H = 32, 4
    config = dict(image_size=(32, 48), audio_size=(32, 32), embed_dim=D, depth=1, num_heads=H, fusion_type=kind,
                  num_fusion_tokens=(3, 2, 2), fusion_num_heads=H, fusion_attn_ratio=0.5)
    encoder = EarlyFusionEncoder(**config).eval()
    randomise(encoder, 6)
    block = encoder.fusion_blocks[0]
    fusion, image, audio = torch.randn(2, 7, D), torch.randn(2, 6, D), torch.randn(2, 4, D)
    with torch.no_grad():
        ours = block.image_attention(fusion, image, audio)
        m, v, a = block._normalise(fusion, image, audio)
        attn = block.attn
        if kind == "dense":
            pairs = torch.cat([a[:, :, None].expand(2, 4, 6, D), v[:, None].expand(2, 4, 6, D)], -1).reshape(2, 24, 2 * D)
            keys = block.attn.kv(pairs)[..., : attn.inner]
            w = _materialised_pair_weights(attn.q(m), keys, H, attn.scale).mean(1)  # (B, M, 24) audio-major
            expected = w.reshape(2, 7, 4, 6).sum(2)
        elif kind == "factorized":
            f, mv, ma = m.split((3, 2, 2), 1)
            mv2, ma2 = attn.attn_v(mv, v), attn.attn_a(ma, a)
            pairs = torch.cat([mv2[:, :, None].expand(2, 2, 2, D), ma2[:, None].expand(2, 2, 2, D)], -1).reshape(2, 4, 2 * D)
            w = _materialised_pair_weights(attn.q(f), attn.k(pairs), H, attn.scale).mean(1)  # (B, F, Kv*Ka)
            over_agg = w.reshape(2, 3, 2, 2).sum(3)
            key = attn.attn_v.kv(v)[..., :D]
            over_image = _materialised_pair_weights(attn.attn_v.q(mv), key, H, (D // H) ** -0.5).mean(1)
            expected = over_agg @ over_image
        else:
            inner = attn.q.out_features
            keys = attn.kv(torch.cat([v, a], 1))[..., :inner]
            w = _materialised_pair_weights(attn.q(m), keys, H, (inner // H) ** -0.5).mean(1)[..., :6]
            expected = w / w.sum(-1, keepdim=True)
    assert ours.shape == expected.shape
    assert_close_rel(ours, expected, tol=1e-5)
    assert torch.allclose(ours.sum(-1), torch.ones(()), atol=1e-5)
    out = encoder(torch.randn(2, 3, 32, 48), torch.randn(2, 1, 32, 32), return_attention=True)
    assert len(out.image_attention) == 1 and out.image_attention[0].shape[-1] == 6
