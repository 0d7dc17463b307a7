"""AV-Digits localisation: can contrastive heads learn the audio-visual link from frozen features given
many steps? Caches the features of a fixed pool of training scenes (each side beside a neutral partner:
image with silence, sound with a blank image), trains the two projection heads of the localiser by
multiple-instance InfoNCE, and reports on test scenes AP50 (cIoU, fixed@0.5), mean cIoU and how often the
heatmap's peak lies in the speaking digit's box.

    python benchmarks/avdigits/localize_cached.py --image-init IMG/stream.pth --audio-init AUD/stream.pth
    python benchmarks/avdigits/localize_cached.py --pretrained RUN/final

First, a per-patch linear probe of the image tokens (which digit, or background, lies under each patch
centre): how much of "which digit is where" the features hold at all.

The heads use the localisation recipe's temperature (0.5 since 2026-12-06; these numbers are at 0.07,
where the heads single out one patch: see docs/avdigits.md for the temperature runs).

Measured 2026-12-06 on the benchmark's stage-1 streams (4,000 scenes, batch 128, AdamW 1e-3, 2 threads):
step 100: loss 4.18, AP50 0.094, peak-in-box 0.638; 300: 3.54 / 0.066 / 0.668; 1,000: 2.08 / 0.048 / 0.590;
2,000: 1.17 / 0.034 / 0.560. The heads learn to match the training pairs, not the digit they share.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avfusion.engine import load_config
from avfusion.metrics.localization import ciou
from avfusion.models.localization import info_nce, mil_scores, projection
from avfusion.tasks.annotated import boxes_mask
from avfusion.tasks.localize import LocalizeTask, to_pixels
from avfusion.tasks.registry import get_recipe

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "avdigits" / "localize.yaml"


def features(encoder, dataset, count: int):
    """Image tokens beside silence (N, Nv, D), mean audio token beside a blank image (N, D), and the items."""
    images, audios, items = [], [], []
    for start in range(0, count, 100):
        batch = [dataset[i] for i in range(start, min(count, start + 100))]
        image, audio = torch.stack([b["image"] for b in batch]), torch.stack([b["audio"] for b in batch])
        with torch.no_grad():
            out = encoder(torch.cat([image, torch.zeros_like(image)]), torch.cat([torch.zeros_like(audio), audio]))
        images.append(out.image[:len(batch)])
        audios.append(out.audio[len(batch):].mean(1))
        items += batch
    return torch.cat(images), torch.cat(audios), items


def patch_probe(encoder, train, test, train_image, test_image) -> tuple[float, float]:
    """A linear probe of the image tokens for the digit whose box holds each patch centre (or background):
    the share of held-out digit tokens and of background tokens it names right. What a localiser can read."""
    from avfusion.tasks.unimodal import patch_targets

    def targets(dataset, count):
        source = getattr(dataset, "dataset", dataset)  # a training set is wrapped in EpochSamples
        scenes = [source.scenes[i] for i in range(count)]
        boxes = torch.as_tensor(np.stack([s["boxes"] for s in scenes]))
        classes = torch.as_tensor(np.stack([s["classes"] for s in scenes]))
        return patch_targets(boxes, classes, encoder.image.grid_size, encoder.image.patch_embed.patch_size, 10)

    x, y = train_image.flatten(0, 1), targets(train, len(train_image)).flatten()
    mean, std = x.mean(0), x.std(0) + 1e-6
    probe = torch.nn.Linear(x.shape[-1], 11)
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-2)
    for _ in range(300):
        pick = torch.randint(0, len(x), (1024,))
        loss = F.cross_entropy(probe((x[pick] - mean) / std), y[pick])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        guess = probe((test_image.flatten(0, 1) - mean) / std).argmax(-1)
    truth = targets(test, len(test_image)).flatten()
    digit = truth < 10
    return float((guess[digit] == truth[digit]).float().mean()), float((guess[~digit] == truth[~digit]).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image-init", help="stage-1 image stream (stream.pth)")
    p.add_argument("--audio-init", help="stage-1 audio stream (stream.pth)")
    p.add_argument("--pretrained", help="an encoder checkpoint instead (e.g. the AV-MAE run's final/)")
    p.add_argument("--scenes", type=int, default=4000, help="fixed training pool (default %(default)s)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args()
    torch.manual_seed(0)
    overrides = [f"data.size={args.scenes}", "data.eval_size=500", "data.fresh=false"]
    if args.pretrained:
        overrides.append(f"model.pretrained={args.pretrained}")
    elif args.image_init and args.audio_init:
        overrides += [f"model.image_init={args.image_init}", f"model.audio_init={args.audio_init}"]
    else:
        p.error("give --pretrained, or --image-init and --audio-init")
    cfg = load_config(get_recipe("localize"), RECIPE, overrides)
    task = LocalizeTask(cfg)
    encoder = task.build_model().encoder.eval()
    train_image, train_audio, _ = features(encoder, task.train_dataset(), args.scenes)
    test_image, test_audio, test_items = features(encoder, task.eval_dataset(), 500)
    digit_tokens, background_tokens = patch_probe(encoder, task.train_dataset(), task.eval_dataset(), train_image,
                                                  test_image)
    print(f"per-patch linear probe of the image tokens: digit tokens {digit_tokens:.3f}, background "
          f"{background_tokens:.3f}", flush=True)
    d, grid = train_image.shape[-1], encoder.image.grid_size
    patch_head, query_head = projection(d, 256, 64), projection(d, 256, 64)
    opt = torch.optim.AdamW([*patch_head.parameters(), *query_head.parameters()], lr=args.lr, weight_decay=0.0)

    def embed(image, audio):
        query = F.normalize(query_head(audio), dim=-1)
        patches = F.normalize(patch_head(image.flatten(0, 1)), dim=-1).reshape(*image.shape[:2], -1)
        return query, patches

    def evaluate():
        patch_head.eval(), query_head.eval()
        with torch.no_grad():
            query, patches = embed(test_image, test_audio)
            heat = torch.einsum("bp,bnp->bn", query, patches).reshape(-1, *grid)
        patch_head.train(), query_head.train()
        size = cfg.data.image_size
        pixels = to_pixels(heat, size)
        scores = np.array([ciou(pixels[j], boxes_mask(it["box"].numpy(), size).astype(np.float64), "fixed@0.5")
                           for j, it in enumerate(test_items)])
        peak = heat.flatten(1).argmax(1)
        patch = size // grid[0]
        centre_x, centre_y = (peak % grid[1]) * patch + patch // 2, (peak // grid[1]) * patch + patch // 2
        inside = [bool(it["box"][0] <= centre_x[j] < it["box"][2] and it["box"][1] <= centre_y[j] < it["box"][3])
                  for j, it in enumerate(test_items)]
        return float((scores >= 0.5).mean()), float(scores.mean()), float(np.mean(inside))

    for step in range(1, args.steps + 1):
        pick = torch.randint(0, args.scenes, (128,))
        loss = info_nce(mil_scores(*embed(train_image[pick], train_audio[pick])), cfg.model.temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in (100, 300, 1000, 2000, 4000) or step == args.steps:
            ap50, mean_ciou, inside = evaluate()
            print(f"step {step}: loss {loss.item():.3f}, AP50 {ap50:.3f}, mean cIoU {mean_ciou:.3f}, "
                  f"peak in the speaker's box {inside:.3f}", flush=True)


if __name__ == "__main__":
    main()
