"""The benchmark's figures, written to ``DIR/figures``: training curves, the ablation table, and (from
:mod:`avfusion_avdigits.examples`) what the trained models do on test scenes.

Rendering uses matplotlib's Agg canvas directly (never pyplot's global state), like
:mod:`avfusion.overlays`, whose heatmap and mask overlays the example figures reuse.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from avfusion_avdigits import results

log = logging.getLogger(__name__)

COLOURS = {"factorized": "tab:blue", "dense": "tab:orange", "none": "tab:green"}


def new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: Path, title: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.savefig(path, format="png")
    return path


STAGE1_SUFFIX = "_stage1"


def training_curves(path: Path, runs: Sequence) -> Path:
    """One panel per stage with a curve title in the stage table: training loss against optimizer step, one
    line per fusion type; a stage's counterpart on the stage-1 encoder (``<stage>_stage1``, no AV-MAE) in
    the same panel, dashed grey."""
    curves = {k: r.stage.curve for run in runs for k, r in run.stages.items() if r.stage.curve}
    keys = list(curves)
    cols = 4
    rows = -(-len(keys) // cols)
    fig = new_figure(4.0 * min(cols, len(keys)), 3.0 * rows)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, min(cols, len(keys)), i + 1)
        for run in runs:
            if key not in run.stages:
                continue
            records = [r for r in results.read_metrics(run.stages[key].run_dir)
                       if isinstance(r.get("loss"), (int, float))]
            if not records:
                continue
            steps = [r["step"] for r in records]
            colour = COLOURS.get(run.fusion)
            label = fusion_name(run.fusion) if len(runs) > 1 else ("image + audio" if key == "pretrain" else None)
            ax.plot(steps, [r["loss"] for r in records], color=colour, label=label)
            if key == "pretrain":
                ax.plot(steps, [r.get("loss_image") for r in records], color=colour, linestyle="--",
                        label="image" if len(runs) == 1 else None)
                ax.plot(steps, [r.get("loss_audio") for r in records], color=colour, linestyle=":",
                        label="audio" if len(runs) == 1 else None)
        stage1 = runs[0].stages.get(key + STAGE1_SUFFIX)
        if stage1 is not None:
            if len(runs) == 1 and ax.lines:
                ax.lines[0].set_label("stage 1 + AV-MAE")
            records = [r for r in results.read_metrics(stage1.run_dir) if isinstance(r.get("loss"), (int, float))]
            ax.plot([r["step"] for r in records], [r["loss"] for r in records], color="0.5", linestyle="--",
                    label=f"stage 1 only (no AV-MAE){f', {fusion_name(runs[0].fusion)}' if len(runs) > 1 else ''}")
        ax.set_title(curves[key], fontsize=9)
        ax.set_xlabel("optimizer step", fontsize=8)
        ax.set_ylabel("training loss", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    note = "mean over each 5-step window" + ("; pretrain: dashed = image, dotted = audio" if len(runs) > 1 else "")
    return save(fig, path, f"Training curves ({note})")


def fusion_name(fusion: str) -> str:
    return "no fusion" if fusion == "none" else f"{fusion} fusion"


def ablation_table(path: Path, table: dict[str, dict[str, float | None]]) -> Path:
    """The ablation's headline numbers per fusion type (report.json's ``ablation_table``) as a picture."""
    columns = [name for name, _ in results.ABLATION]
    cells = []
    for values in table.values():
        row = []
        for name, value in zip(columns, values.values()):
            row.append("n/a" if value is None else f"{value:.2f}" if "separation" in name else f"{value:.3f}")
        cells.append(row)
    fig = new_figure(1.45 * len(columns) + 1.2, 0.45 * len(cells) + 1.4)
    ax = fig.add_subplot(1, 1, 1)
    ax.axis("off")
    table_art = ax.table(cellText=cells, rowLabels=[fusion_name(f) for f in table], colLabels=columns,
                         loc="center", cellLoc="center")
    table_art.auto_set_font_size(False)
    table_art.set_fontsize(9)
    table_art.scale(1.0, 2.2)
    return save(fig, path, "Ablation: the same pipeline with factorized, dense and no fusion\n"
                           "('none': independent streams, so no attention read-out)")


def make_figures(output: Path, runs: Sequence, ablation: dict[str, dict[str, float | None]] | None = None
                 ) -> list[str]:
    """Every figure for ``runs`` (the first run's models for the examples; ``ablation``: the ablation's
    headline numbers per fusion type, :func:`avfusion_avdigits.results.ablation`); paths relative to ``output``."""
    from avfusion_avdigits import examples

    figures = Path(output) / "figures"
    written = [training_curves(figures / "training_curves.png", runs)]
    written += examples.all_examples(figures, runs[0])
    if ablation:
        written.append(ablation_table(figures / "ablation.png", ablation))
    return [str(Path(p).relative_to(output)) for p in written]
