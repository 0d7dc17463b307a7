"""Named evaluation protocols (docs/protocols.md): pure functions plus rank-aware accumulators.

Every summary is a dict carrying ``protocol``, ``N`` (items scored) and ``skipped``
({reason: count}) beside its numbers. This package imports no model, data, engine or CLI code.
"""
from __future__ import annotations

from . import classification, knn, localization, segmentation, separation
from ._common import Skipped
from .accumulate import Accumulator, merge_unique
from .classification import (ClassMean, average_precision, d_prime, mean_average_precision,
                             roc_auc, summarize_multi_label, summarize_single_label, top1)
from .localization import (center_heatmap, ciou, full_heatmap, gt_from_boxes_consensus,
                           gt_from_boxes_union)
from .localization import summarize as summarize_localization
from .segmentation import (avsbench_video, f_measure, foreground_iou, official_frame,
                           semantic_frame, summarize_avsbench, summarize_official,
                           summarize_semantic)
from .separation import bss_eval, evaluate_mixture, sdr_mix
from .separation import summarize as summarize_separation

__all__ = [
    "Accumulator", "ClassMean", "Skipped", "average_precision", "avsbench_video", "bss_eval",
    "center_heatmap", "ciou", "classification", "d_prime", "evaluate_mixture", "f_measure",
    "foreground_iou", "full_heatmap", "gt_from_boxes_consensus", "gt_from_boxes_union", "knn",
    "localization", "mean_average_precision", "merge_unique", "official_frame", "roc_auc",
    "sdr_mix", "segmentation", "semantic_frame", "separation", "summarize_avsbench",
    "summarize_localization", "summarize_multi_label", "summarize_official",
    "summarize_semantic", "summarize_separation", "summarize_single_label", "top1",
]
