"""AV-Digits separation: do the audio tokens of a mixture say which digit owns each patch? A linear probe
of the encoder's audio tokens on 2-voice mixtures (target: the digit whose voice is >= 6 dB above the
other's in the patch; other patches left out), and optionally a per-patch audio stream to compare.

    python benchmarks/avdigits/audio_tokens.py --image-init IMG/stream.pth --audio-init AUD/stream.pth
    python benchmarks/avdigits/audio_tokens.py --raw          # the log-mel patches themselves
    python benchmarks/avdigits/audio_tokens.py --train-per-patch 600 --out runs/audio_per_patch \\
        --image-init IMG/stream.pth                            # train that stream, then probe it

``--train-per-patch N``: the audio stream trained N steps of 64 on 1-2 summed voices, each patch labelled
with its dominant digit (>= 6 dB above the other voice, or for one voice above its own 20th-percentile
patch power) or "none" (11 classes), saved as ``OUT/stream.pth`` for ``model.audio_init``.

Measured 2026-12-06 with this script (the stage-1 streams and AV-MAE encoder of a full run of `7774bd1`,
1,500 / 300 mixtures, one thread): raw patches 0.148, stage-1 audio stream 0.448, after AV-MAE 0.433,
per-patch stream of 600 steps 0.620 (a first version of it, same objective: 0.585). On that first
version, the separator with the oracle condition learns its selection no faster (docs/avdigits.md).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avfusion.audio import log_mel_spectrogram
from avfusion.data.avdigits.scene import render_sound
from avfusion.engine import load_config
from avfusion.tasks.registry import get_recipe
from avfusion.tasks.separate import SeparateTask
from avfusion.tasks.separate_data import AVDigitsMixtureSamples

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "avdigits"
DOMINANT = 4.0  # power ratio: 6 dB


def patch_power(log_mels: torch.Tensor, patch: int) -> torch.Tensor:
    """(K, n_mels, T) log10-mel of K sources -> (K, patches) mean power per patch."""
    return F.avg_pool2d(torch.pow(10.0, log_mels)[None], patch)[0].flatten(1)


def mixture_features(encoder, split: str, count: int, cfg, raw: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Audio tokens (or raw patches) of ``count`` mixtures, flattened, and each patch's dominant digit (-100:
    neither voice 6 dB above the other)."""
    data = AVDigitsMixtureSamples(split, cfg.data, seed=0, size=count)
    patch = encoder.audio.patch_embed.patch_size
    xs, ys = [], []
    for start in range(0, count, 100):
        idx = range(start, min(count, start + 100))
        items = [data[i] for i in idx]
        mix = torch.stack([it["audio"] for it in items])
        with torch.no_grad():
            tokens = (F.unfold(mix, patch, stride=patch).transpose(1, 2) if raw
                      else encoder(torch.zeros(len(items), 3, *encoder.image.patch_embed.input_size), mix).audio)
        for j, i in enumerate(idx):
            power = patch_power(items[j]["source_audio"][:, 0], patch)  # (2, N)
            labels = torch.tensor([int(x) for x in data.scenes[i]["label"]])
            y = labels[power.argmax(0)]
            y[power.max(0).values < DOMINANT * power.min(0).values] = -100
            ys.append(y)
        xs.append(tokens)
    return torch.cat(xs).flatten(0, 1), torch.cat(ys)


def probe(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor]) -> float:
    (x, y), (xt, yt) = train, test
    x, xt = x[y >= 0], xt[yt >= 0]
    y, yt = y[y >= 0], yt[yt >= 0]
    mean, std = x.mean(0), x.std(0) + 1e-6
    head = torch.nn.Linear(x.shape[1], 10)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-2)
    for _ in range(500):
        pick = torch.randint(0, len(x), (1024,))
        loss = F.cross_entropy(head((x[pick] - mean) / std), y[pick])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((head((xt - mean) / std).argmax(-1) == yt).float().mean())


def train_per_patch(stream, steps: int, batch: int = 64, lr: float = 1e-3) -> None:
    """The audio stream, per patch, on 1-2 summed voices of the unimodal audio pool (heads discarded)."""
    from avfusion.models.unimodal import StreamClassifier

    model = StreamClassifier(stream, 10, 0.0, "patch")
    patch = stream.patch_embed.patch_size

    def item(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        first = render_sound("train", 2 * i)
        sources = [first]
        if np.random.default_rng([i, 77]).random() < 0.5:
            second = render_sound("train", 2 * i + 1)
            if second["label"] != first["label"]:
                sources.append(second)
        wave = torch.from_numpy(np.stack([s["audio"] for s in sources]))
        mels = log_mel_spectrogram(torch.cat([wave.sum(0, keepdim=True), wave]), 16000, 64, 1.0)
        power = patch_power(mels[1:], patch)
        if len(sources) == 1:
            top, other, owner = power[0], power[0].quantile(0.2).expand_as(power[0]), torch.zeros_like(power[0]).long()
        else:
            (top, owner), other = power.max(0), power.min(0).values
        y = torch.tensor([s["label"] for s in sources])[owner]
        y[top < DOMINANT * other] = 10
        return mels[:1], y

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    for step in range(steps):
        x, y = map(torch.stack, zip(*[item(i) for i in range(step * batch, (step + 1) * batch)]))
        loss = model(x, y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        if (step + 1) % 100 == 0:
            print(f"per-patch audio stream, step {step + 1}: loss {loss.item():.3f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image-init", help="stage-1 image stream (stream.pth)")
    p.add_argument("--audio-init", help="stage-1 audio stream (stream.pth)")
    p.add_argument("--pretrained", help="an encoder checkpoint instead (e.g. the AV-MAE run's final/)")
    p.add_argument("--raw", action="store_true", help="probe the raw log-mel patches")
    p.add_argument("--train-per-patch", type=int, default=0, metavar="STEPS")
    p.add_argument("--out", help="where --train-per-patch writes stream.pth")
    p.add_argument("--mixtures", type=int, default=1500, help="training mixtures of the probe")
    args = p.parse_args()
    if args.train_per_patch and not args.out:
        p.error("--train-per-patch needs --out")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    overrides = [f"model.pretrained={args.pretrained}"] if args.pretrained else []
    overrides += [f"model.{k}_init={v}" for k, v in (("image", args.image_init), ("audio", args.audio_init)) if v]
    cfg = load_config(get_recipe("separate"), CONFIGS / "separate.yaml", overrides)
    encoder = SeparateTask(cfg).build_model().encoder
    if args.train_per_patch:
        train_per_patch(encoder.audio, args.train_per_patch)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        torch.save({"model": {k: v.contiguous() for k, v in encoder.audio.state_dict().items()}}, out / "stream.pth")
    encoder.eval()
    train = mixture_features(encoder, "train", args.mixtures, cfg, args.raw)
    test = mixture_features(encoder, "test", 300, cfg, args.raw)
    print(f"patches with a dominant voice: {float((train[1] >= 0).float().mean()):.2f}; dominant digit named "
          f"right by a linear probe: {probe(train, test):.3f}")


if __name__ == "__main__":
    main()
