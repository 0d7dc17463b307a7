"""The VGGSounder rows of a classification report (``classify.protocol: vggsounder``; docs/protocols.md).

The image, audio and fusion heads are scored as VGGSounder's ``v``, ``a`` and ``av`` predictions by the
``vggsounder`` package's own metrics (:mod:`avfusion.metrics.vggsounder`), beside a ``chance`` row: seeded
random scores through the same files and code. The joint head (the mean of the three) has no VGGSounder
counterpart and is not scored. Rank 0 scores, every rank gets the same rows.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from avfusion.errors import AvfusionError, ConfigError, DataError
from avfusion.metrics import vggsounder as vgs
from avfusion.tasks.evaluation import EvaluationReport

log = logging.getLogger(__name__)

HEAD_OF = {"v": ("image", 0), "a": ("audio", 1), "av": ("fusion", 2)}  # modality -> (head, row in the (4, C) logits)


def _is_main() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def class_map(class_names: Sequence[str] | None, num_classes: int, gt: Any) -> vgs.ClassMap:
    """The model's classes matched to the package's by name; says in the log what one side lacks."""
    if class_names is None:
        raise ConfigError("the VGGSounder protocol matches classes by name, and neither the checkpoint nor the "
                          "dataset names them; evaluate on VGGSound (data.name=vggsound) or pin the names "
                          "with data.index_options.classes=FILE")
    if len(class_names) != num_classes:
        raise DataError(f"{len(class_names)} class names for {num_classes} logits")
    cmap = vgs.map_classes(class_names, gt.get_all_labels())
    log.info("VGGSounder: %d of the model's %d classes matched the package's %d by name", cmap.matched,
             num_classes, len(cmap.package_classes))
    if cmap.dropped:
        log.info("VGGSounder: model classes dropped from the scores (no VGGSounder class): %s", list(cmap.dropped))
    if cmap.missing:
        log.warning("VGGSounder: package classes the model lacks, scored as never predicted: %s", list(cmap.missing))
    return cmap


def _score(items: dict, ids: Sequence[str], cmap: vgs.ClassMap, gt: Any, seed: int,
           directory: str | None) -> vgs.Scores:
    logits = np.stack([v[0] for v in items.values()], axis=1)  # (4, N, C)
    mapped = {m: cmap.apply(logits[row]) for m, (_, row) in HEAD_OF.items()}
    return vgs.evaluate(ids, mapped, seed=seed, directory=directory, gt=gt)


def _scores_on_rank0(items: dict, ids: Sequence[str], cmap: vgs.ClassMap, gt: Any, seed: int,
                     directory: str | None) -> vgs.Scores:
    from avfusion.engine.distributed import broadcast_object

    payload: Any = None
    if _is_main():
        try:
            payload = _score(items, ids, cmap, gt, seed, directory)
        except AvfusionError as exc:
            payload = exc
    payload = broadcast_object(payload)
    if isinstance(payload, Exception):
        raise payload
    return payload


def _value(results: dict, metric: str) -> float:
    return float(results.get(metric, results.get(f"{metric}@1", float("nan"))))


def add_rows(report: EvaluationReport, items: dict, ids: Sequence[str], class_names: Sequence[str] | None,
             seed: int, directory: str | None) -> None:
    """Add the VGGSounder rows (every head, then ``chance``) of ``items`` ({index: ((4, C) logits, label)};
    ``ids[i]`` is the clip id of the i-th item) to ``report``."""
    gt = vgs.labels()
    num_classes = int(np.shape(next(iter(items.values()))[0])[-1])
    cmap = class_map(class_names, num_classes, gt)
    clips = vgs.clip_ids(gt)
    unlabelled = len(ids) - len(set(ids) & clips)
    scores = _scores_on_rank0(items, ids, cmap, gt, seed, directory)
    for name, subject_of in ((vgs.MODEL_FILE, None), (vgs.CHANCE_FILE, "chance")):
        for m in ("v", "a", "av"):
            n = scores.n[m]
            skipped = {"not in VGGSounder's labels": unlabelled, f"no {m.upper()} label": len(ids) - unlabelled - n}
            for metric in vgs.METRICS:
                report.add(subject_of or HEAD_OF[m][0], metric, f"vggsounder/{m}",
                           _value(scores.results[name][m], metric), n, skipped)
    report.meta.update(vggsounder=scores.package_version, vggsounder_classes_matched=cmap.matched,
                       vggsounder_classes_dropped=list(cmap.dropped), vggsounder_classes_missing=list(cmap.missing),
                       vggsounder_clips=len(clips), vggsounder_seed=seed)
    if directory:
        report.meta["vggsounder_predictions"] = f"{directory}/{vgs.MODEL_FILE}.pkl"
