"""Pictures of dataset samples for a person to look at (matplotlib, Agg backend, no display needed)."""
from __future__ import annotations

import math
from pathlib import Path

__all__ = ["avdigits_grid"]

_SOUNDING, _OTHER = "#39ff14", "#ffffff"


def avdigits_grid(path: str | Path, *, split: str = "train", n: int = 16, seed: int = 0,
                  image_size: int | None = None, progress: bool = True) -> Path:
    """Draw AV-Digits scenes 0..n-1 of `split` in a grid and save it to `path` (PNG, PDF, ... by suffix).

    Every digit's box is drawn, the sounding digit's box in green and solid, the others dashed white,
    each labelled with its class; titles give the scene index and the spoken digit.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from tqdm import tqdm

    from avfusion.data.avdigits import DEFAULT_IMAGE_SIZE, render_scene

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    size = image_size or DEFAULT_IMAGE_SIZE
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2.0 * cols, 2.25 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"AV-Digits {split}, seed {seed}: green = the digit you hear")
    for i in tqdm(range(n), desc="rendering scenes", unit="scene", disable=not progress):
        scene = render_scene(split, i, seed, size)
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(scene["image"], interpolation="nearest")
        for j in range(int(scene["num_digits"])):
            x0, y0, x1, y1 = (float(v) for v in scene["boxes"][j])
            sounding = j == int(scene["sounding"])
            colour = _SOUNDING if sounding else _OTHER
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour,
                                   linewidth=2.0 if sounding else 1.0, linestyle="-" if sounding else "--"))
            inside = y0 < 0.12 * size                   # no room above the box: label inside it
            ax.text(x0 + 0.5 if inside else x0 - 0.5, y0 + 0.5 if inside else y0 - 1.5, str(int(scene["classes"][j])),
                    color=colour, fontsize=7, va="top" if inside else "bottom", ha="left",
                    fontweight="bold" if sounding else "normal")
        ax.set_title(f"#{i}: says {int(scene['label'])}", fontsize=8)
        ax.set_axis_off()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
