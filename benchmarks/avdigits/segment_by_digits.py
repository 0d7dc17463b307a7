"""AV-Digits segmentation by the number of visible digits: does the segmenter choose the speaking digit?

    python benchmarks/avdigits/segment_by_digits.py runs/avdigits/checkpoints/segment \\
        [runs/avdigits/checkpoints/segment_stage1 ...] [--scenes 200]

Foreground IoU (p > 0.5, per scene, averaged) of each trained segmenter on the benchmark's test scenes,
split by how many digits the scene shows (1, 2 or 3), beside the ``all_strokes`` prediction (every
visible digit's strokes): with K digits outlining all of them scores about 1 / K, so only a segmenter above
that with 2 and 3 digits picks the one that speaks. It trains nothing: each checkpoint is evaluated
through the segmentation task's own evaluation path. Measured runs: RESULTS.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from avfusion.engine import load_config
from avfusion.tasks.registry import build_task, get_recipe

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "avdigits" / "segment.yaml"


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    return float((pred & gt).sum() / max((pred | gt).sum(), 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", help="segmentation checkpoints (save_pretrained directories)")
    p.add_argument("--scenes", type=int, default=200, help="test scenes (default %(default)s, the benchmark's)")
    args = p.parse_args()
    cfg = load_config(get_recipe("segment"), str(RECIPE), [f"data.eval_size={args.scenes}"])
    task = build_task("segment", cfg)
    loader = DataLoader(task.eval_dataset(), batch_size=50, collate_fn=task.collate)
    rows: dict[str, list[tuple[int, float]]] = {}
    models = {c: task.model_for_evaluation(c).eval() for c in args.checkpoints}  # named as given
    with torch.no_grad():
        for batch in loader:
            gt = batch["mask"].numpy().astype(bool)
            every = batch["all_strokes"].numpy() > 0.5  # (B, H, W): every visible digit's strokes
            ks = batch["num_digits"].tolist()
            for name, model in models.items():
                pred = (torch.sigmoid(model(batch["image"], batch["audio"]).logits[:, 0]) > 0.5).numpy()
                rows.setdefault(name, []).extend((k, iou(pred[j], gt[j])) for j, k in enumerate(ks))
            rows.setdefault("all_strokes", []).extend((k, iou(every[j], gt[j])) for j, k in enumerate(ks))
    print("| prediction | all | 1 digit | 2 digits | 3 digits |\n|---|---|---|---|---|")
    for name, values in rows.items():
        arr = np.array(values)
        by_k = [arr[arr[:, 0] == k, 1] for k in (1, 2, 3)]
        cells = " | ".join(f"{v.mean():.3f} (N {len(v)})" if len(v) else "-" for v in by_k)
        print(f"| {name} | {arr[:, 1].mean():.3f} | {cells} |")


if __name__ == "__main__":
    main()
