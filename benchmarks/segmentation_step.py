"""A segmenter's training step (forward + backward) with the folded predictor against the plain one.

    python benchmarks/segmentation_step.py [--repeats 5] [--threads 1]

The predictor (conv 3x3 -> bilinear x2 -> conv 3x3 to the class logits) is computed folded
(``avfusion.models.segmentation.Predictor``): the same function and parameters, the second conv's
per-offset channel mixes folded into the first. The baseline runs the same model with the three layers
as written (``Predictor.plain``), in the same process, interleaved, median of ``--repeats``. Two shapes:
the AV-Digits recipe (embed_dim 128, depth 4, 96x96 images, decoder width floor 32, batch 8) and the
official ViT-B decoder (224x224, floor 128, batch 2). Prints Markdown rows for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from avfusion.models import build_model, encoder_config

SHAPES = {
    "AV-Digits (D 128, depth 4, 96x96, floor 32, batch 8)": dict(
        encoder=dict(embed_dim=128, depth=4, num_heads=4, image_size=(96, 96), audio_size=(64, 64),
                     num_fusion_tokens=(4, 2, 2), fusion_num_heads=4),
        min_width=32, batch=8),
    "ViT-B official (224x224, floor 128, batch 2)": dict(encoder={}, min_width=128, batch=2),
}


def step_seconds(model, image, audio, target, plain: bool) -> float:
    predictor = model.predictor
    predictor.forward = predictor.plain if plain else type(predictor).forward.__get__(predictor)
    start = time.process_time()
    model(image, audio, target).loss.backward()
    model.zero_grad(set_to_none=True)
    return time.process_time() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="timed steps per variant (default %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print("| shape | folded (ours) | plain | plain / folded |\n|---|---|---|---|")
    for name, shape in SHAPES.items():
        enc = encoder_config("base", **shape["encoder"])
        model = build_model("segment", enc, min_width=shape["min_width"]).train()
        b = shape["batch"]
        image = torch.randn(b, 3, *enc.image_size)
        audio = torch.randn(b, 1, *enc.audio_size)
        target = (torch.rand(b, *enc.image_size) > 0.9).float()
        times: dict[bool, list[float]] = {False: [], True: []}
        for plain in (False, True):  # warm-up
            step_seconds(model, image, audio, target, plain)
        for _ in range(args.repeats):
            for plain in (False, True):
                times[plain].append(step_seconds(model, image, audio, target, plain))
        ours, base = statistics.median(times[False]), statistics.median(times[True])
        print(f"| {name} | {ours * 1e3:.0f} CPU-ms | {base * 1e3:.0f} CPU-ms | {base / ours:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
