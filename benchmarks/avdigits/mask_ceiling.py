"""AV-Digits separation: the SDR a PERFECT mask reaches through the mel-mask resynthesis, at full mel
resolution and averaged over coarser cells (the 16 x 16 audio patch is the token grid the separation
decoder upsamples). Calibrates what the separation target asks for.

    python benchmarks/avdigits/mask_ceiling.py [--mixtures 60]

Measured 2026-12-06 (60 test mixtures): full 16.6 dB SDRi, 8x8 cells 9.2, 16x16 patches 5.6, 0.25 s time
slices 3.7; the mixture itself 0.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from avfusion.audio import log_mel_spectrogram, mask_to_waveform
from avfusion.data.avdigits import render_mixture
from avfusion.metrics.separation import evaluate_mixture

CELLS = {"full": None, "8x8": (8, 8), "16x16 (token grid)": (16, 16), "time 0.25 s": (64, 16)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mixtures", type=int, default=60, help="test mixtures to score (default %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(1)
    scores: dict[str, list[dict]] = {name: [] for name in CELLS}
    for i in range(args.mixtures):
        m = render_mixture("test", i)
        sources = torch.from_numpy(m["target"]).float()
        mixture = sources.sum(0)
        mels = 10 ** log_mel_spectrogram(torch.cat([mixture[None], sources]), 16000, 64, 1.0)  # (3, 64, 64)
        ratio = mels[1:] / (mels[1:] + mels[:1] + 1e-5)  # the separation recipe's target mask, (2, 64, 64)
        for name, cell in CELLS.items():
            mask = ratio if cell is None else F.interpolate(F.avg_pool2d(ratio[:, None], cell), scale_factor=cell,
                                                            mode="nearest")[:, 0]
            mask = mask.clamp(1e-6, 1 - 1e-6)
            estimate = mask_to_waveform(mixture.expand(2, -1), torch.log(mask / (1 - mask)), 16000, 64)
            result = evaluate_mixture(sources, estimate, mixture)
            if isinstance(result, dict):
                scores[name].append(result)
    for name, rows in scores.items():
        print(f"{name:>20}: SDR {np.mean([r['SDR'] for r in rows]):6.2f} dB, SDRi {np.mean([r['SDRi'] for r in rows]):6.2f} dB "
              f"(N {len(rows)})")


if __name__ == "__main__":
    main()
