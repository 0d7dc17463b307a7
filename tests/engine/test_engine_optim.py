"""Parameter groups, the lr rule and schedule, layer decay, the stream ramp, LARS."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from _engine_toy import ToyNet
from avfusion.engine import ParamHints, TrainConfig
from avfusion.engine.optim import LARS, LRSchedule, build_optimizer, param_groups, peak_lr
from avfusion.errors import ConfigError


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.stem = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.scale = nn.Parameter(torch.ones(8))
        self.head = nn.Linear(8, 2)
        self.frozen = nn.Linear(8, 8).requires_grad_(False)


def _by_name(model, groups):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g for g in groups for p in g["params"]}


def test_no_weight_decay_on_biases_norms_and_1d():
    model = Net()
    groups = _by_name(model, param_groups(model, 0.05, ParamHints(no_weight_decay={"pos_embed"})))
    decayed = {n for n, g in groups.items() if g["weight_decay"] > 0}
    assert decayed == {"stem.weight", "head.weight"}
    assert set(groups) == {n for n, p in model.named_parameters() if p.requires_grad}  # frozen left out
    assert groups["scale"]["weight_decay"] == 0.0 and groups["norm.weight"]["weight_decay"] == 0.0


def test_layer_decay_and_pretrained_flags():
    model = ToyNet(8, 16, 0.0)
    layers = {"stem": 0, "norm": 1, "head": 2}
    hints = ParamHints(layer_id=lambda n: layers[n.split(".")[0]], pretrained=lambda n: n.startswith("stem."))
    groups = _by_name(model, param_groups(model, 0.1, hints, layer_decay=0.5))
    assert groups["stem.weight"]["lr_scale"] == 0.25 and groups["stem.weight"]["pretrained"]
    assert groups["norm.bias"]["lr_scale"] == 0.5 and not groups["norm.bias"]["pretrained"]
    assert groups["head.weight"]["lr_scale"] == 1.0 and groups["head.weight"]["weight_decay"] == 0.1
    plain = _by_name(model, param_groups(model, 0.1, hints))  # no layer decay asked
    assert {g["lr_scale"] for g in plain.values()} == {1.0}
    with pytest.raises(ConfigError, match="layer ids"):
        param_groups(model, 0.1, ParamHints(), layer_decay=0.75)


def test_peak_lr_follows_effective_batch():
    cfg = TrainConfig(base_lr=1.5e-4, batch_size=64, accum_steps=4)
    assert peak_lr(cfg, world_size=8) == pytest.approx(1.5e-4 * 64 * 4 * 8 / 256)
    assert peak_lr(TrainConfig(lr=0.01, batch_size=64), world_size=8) == 0.01


def test_schedule_values_by_hand():
    s = LRSchedule(peak=1e-3, min_lr=1e-5, warmup_epochs=2, epochs=10, steps_per_epoch=10, stream_ramp_epochs=4)
    assert s.lr_at(0) == 0.0
    assert s.lr_at(5) == pytest.approx(0.25e-3)  # epoch 0.5 of a 2-epoch warm-up
    assert s.lr_at(20) == pytest.approx(1e-3)  # warm-up done: peak
    assert s.lr_at(60) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)  # half-way through the cosine
    assert s.lr_at(40) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi / 4)))
    assert s.lr_at(100) == pytest.approx(1e-5) and s.lr_at(150) == pytest.approx(1e-5)
    # stream ramp: 0 -> 1 by half-cosine over 4 epochs, then 1
    assert [s.stream_scale_at(k) for k in (0, 20, 40, 70)] == pytest.approx([0.0, 0.5, 1.0, 1.0])
    assert s.stream_scale_at(10) == pytest.approx(0.5 - 0.5 * math.cos(math.pi / 4))


def test_schedule_applied_to_groups():
    model = ToyNet(8, 16, 0.0)
    layers = {"stem": 0, "norm": 1, "head": 2}
    hints = ParamHints(layer_id=lambda n: layers[n.split(".")[0]], pretrained=lambda n: n.startswith("stem."))
    cfg = TrainConfig(weight_decay=0.05, betas=(0.9, 0.95))
    opt = build_optimizer(param_groups(model, 0.05, hints, layer_decay=0.5), cfg, lr=1.0)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.95)
    s = LRSchedule(peak=1e-3, min_lr=0.0, warmup_epochs=2, epochs=10, steps_per_epoch=10, stream_ramp_epochs=4)
    base = s.apply(opt, 20)  # lr 1e-3, ramp 0.5
    lrs = _by_name(model, opt.param_groups)
    assert base == pytest.approx(1e-3)
    assert lrs["stem.weight"]["lr"] == pytest.approx(1e-3 * 0.25 * 0.5)
    assert lrs["norm.weight"]["lr"] == pytest.approx(1e-3 * 0.5)
    assert lrs["head.bias"]["lr"] == pytest.approx(1e-3)


def test_lars_step_by_hand():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # |w| = 5
    b = nn.Parameter(torch.tensor([1.0]))
    opt = LARS([{"params": [w], "weight_decay": 0.0}, {"params": [b], "weight_decay": 0.0}], lr=0.1, momentum=0.9)
    w.grad, b.grad = torch.tensor([[0.0, 2.0]]), torch.tensor([0.5])  # |g| = 2
    opt.step()
    trust = 0.001 * 5 / 2
    assert torch.allclose(w.detach(), torch.tensor([[3.0, 4.0 - 0.1 * 2 * trust]]))
    assert torch.allclose(b.detach(), torch.tensor([1.0 - 0.1 * 0.5]))  # 1-D: plain SGD step
    opt.step()  # momentum: the buffer is 0.9 * old + new
    assert torch.allclose(b.detach(), torch.tensor([1.0 - 0.05 - 0.1 * (0.9 * 0.5 + 0.5)]))
    assert isinstance(build_optimizer([{"params": [w]}], TrainConfig(optimizer="lars"), 0.1), LARS)
