"""Segmentation protocols on 2x2 frames computed by hand."""
from __future__ import annotations

import numpy as np
import pytest

from avfusion.errors import DataError
from avfusion.metrics import Skipped
from avfusion.metrics.segmentation import (avsbench_video, f_measure, foreground_iou,
                                           official_frame, semantic_frame, summarize_avsbench,
                                           summarize_official, summarize_semantic)

# Frame A: probs .9 .6 / .2 .4, gt 1 0 / 1 0. Prediction (> .5) = 1 1 / 0 0.
#   fg: inter 1, union 3 -> 1/3; bg: pred bg {(1,0),(1,1)}, gt bg {(0,1),(1,1)} -> 1/3.
#   F curve (pred = p >= t): t <= .2: 4 px, tp 2 -> P .5 R 1 -> 1.3*.5 / (.15 + 1) = .65/1.15
#   t in (.2,.4]: 3 px, tp 1 -> P 1/3 R .5 -> (1.3/6) / .6 = .3611; (.4,.6]: P .5 R .5 -> .5
#   (.6,.9]: P 1 R .5 -> .65 / .8 = .8125; > .9: nothing -> 0. Max = .8125.
PROB_A = np.array([[0.9, 0.6], [0.2, 0.4]])
GT_A = np.array([[1, 0], [1, 0]])
F_A = 0.65 / 0.8
# Frame C: probs .3 .1 / .1 .1, gt 1 0 / 0 0.
#   t <= .1: 4 px, tp 1 -> P .25 R 1 -> .325 / 1.075; (.1,.3]: P 1 R 1 -> 1; > .3: 0.
PROB_C = np.array([[0.3, 0.1], [0.1, 0.1]])
GT_C = np.array([[1, 0], [0, 0]])


def test_foreground_iou_and_f_measure():
    pred = np.array([[1, 1], [0, 0]])
    assert foreground_iou(pred, GT_A) == pytest.approx(1 / 3)  # inter 1, union 3
    assert foreground_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    # P = R = 1/2 -> 1.3 * .25 / (.15 + .5) = .5
    assert f_measure(pred, GT_A) == pytest.approx(0.5)
    # P = 1/3, R = 1 -> 1.3 / 3 / (.1 + 1) = .39394
    assert f_measure([[1, 1], [1, 0]], GT_C) == pytest.approx(1.3 / 3 / 1.1)
    assert f_measure(np.zeros((2, 2)), GT_C) == 0.0
    with pytest.raises(DataError):
        foreground_iou(PROB_A, GT_A)  # probabilities are not a mask
    with pytest.raises(DataError):
        f_measure(pred, np.ones((3, 3)))


def test_avsbench_video_iou_and_f():
    # frame B: empty gt, pred 1 px -> TN 3 / 4 px = .75; miou = (1/3 + .75) / 2
    prob_b = np.array([[0.7, 0.1], [0.1, 0.1]])
    out = avsbench_video(np.stack([PROB_A, prob_b]), np.stack([GT_A, np.zeros((2, 2))]))
    assert out["miou"] == pytest.approx((1 / 3 + 0.75) / 2)
    assert out["F"] == pytest.approx(F_A)  # only frame A enters the F curve
    assert out["frames"] == 2 and out["frames_empty_gt"] == 1


def test_avsbench_curve_is_averaged_before_max():
    # average of the A and C curves is largest on (.1,.2]: (.65/1.15 + 1) / 2 = .7826, not the
    # mean of the per-frame maxima (.8125 + 1) / 2 = .90625
    out = avsbench_video(np.stack([PROB_A, PROB_C]), np.stack([GT_A, GT_C]))
    assert out["F"] == pytest.approx((0.65 / 1.15 + 1) / 2)
    # IoU: A 1/3; C pred (> .5) empty, gt 1 px -> 0 -> miou 1/6
    assert out["miou"] == pytest.approx(1 / 6)


def test_summarize_avsbench_counts_foreground_free_videos_as_zero_f():
    v1 = avsbench_video(PROB_A[None], GT_A[None])  # miou 1/3, F .8125
    v2 = avsbench_video(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)))  # TN 4/4 -> 1, F 0
    assert v2["miou"] == pytest.approx(1.0) and v2["F"] == 0.0
    out = summarize_avsbench([v1, v2])
    assert out["protocol"] == "avsbench" and out["N"] == 2 and out["frames"] == 2
    assert out["miou"] == pytest.approx((1 / 3 + 1) / 2)
    assert out["F"] == pytest.approx(F_A / 2)
    assert out["videos_without_foreground"] == 1


def test_official_protocol():
    a = official_frame(PROB_A, GT_A)
    assert a["iou_fg"] == pytest.approx(1 / 3) and a["iou_bg"] == pytest.approx(1 / 3)
    assert a["F"] == pytest.approx(F_A)
    # frame D: all fg predicted and true: fg 4/4 = 1, bg absent from both -> None; F = 1
    d = official_frame(np.full((2, 2), 0.9), np.ones((2, 2)))
    assert d["iou_fg"] == pytest.approx(1.0) and d["iou_bg"] is None
    assert d["F"] == pytest.approx(1.0)
    e = official_frame(PROB_A, np.zeros((2, 2)))
    assert e == Skipped("all-background ground truth")
    # fg = (1/3 + 1) / 2 = 2/3; bg = 1/3 (frame A only); miou = (1/3 + 2/3) / 2 = .5
    out = summarize_official([a, d, e])
    assert out["protocol"] == "official" and out["N"] == 2
    assert out["skipped"] == {"all-background ground truth": 1}
    assert out["miou_fg"] == pytest.approx(2 / 3) and out["iou_bg"] == pytest.approx(1 / 3)
    assert out["miou"] == pytest.approx(0.5)
    assert out["F"] == pytest.approx((F_A + 1) / 2)
    with pytest.raises(DataError):
        official_frame(PROB_A * 3, GT_A)  # logits, not probabilities


def _onehot_scores(pred, num_classes):
    return np.eye(num_classes)[pred].transpose(2, 0, 1)  # (C, H, W), argmax = pred


def test_semantic_frame_by_hand():
    # labels 0 1 / 1 2, prediction 0 1 / 2 2, 4 classes (class 3 absent)
    # class 0: inter 1, union 1 -> 1; P 1 R 1 -> F 1
    # class 1: inter 1, union 2 -> .5; P 1 R .5 -> .65 / .8 = .8125
    # class 2: inter 1, union 2 -> .5; P .5 R 1 -> .65 / 1.15
    out = semantic_frame(_onehot_scores(np.array([[0, 1], [2, 2]]), 4), np.array([[0, 1], [1, 2]]))
    np.testing.assert_allclose(out["iou"], [1, 0.5, 0.5, 0], atol=1e-12)
    np.testing.assert_allclose(out["F"], [1, 0.8125, 0.65 / 1.15, 0], atol=1e-12)
    np.testing.assert_array_equal(out["present"], [True, True, True, False])
    # class 1 predicted only: IoU 0, F 0 (recall 0/0), present; class 0: 3/4, F .975 / 1.05
    out = semantic_frame(_onehot_scores(np.array([[1, 0], [0, 0]]), 4), np.zeros((2, 2), int))
    np.testing.assert_allclose(out["iou"][:2], [0.75, 0.0], atol=1e-12)
    np.testing.assert_allclose(out["F"][:2], [0.975 / 1.05, 0.0], atol=1e-12)
    assert out["present"][1]


def test_summarize_semantic():
    f1 = semantic_frame(_onehot_scores(np.array([[0, 1], [2, 2]]), 4), np.array([[0, 1], [1, 2]]))
    f2 = semantic_frame(_onehot_scores(np.zeros((2, 2), int), 4), np.zeros((2, 2), int))
    # class counts [2, 1, 1, 0]; per-class IoU [(1 + 1)/2, .5, .5, -]; F [1, .8125, .5652, -]
    out = summarize_semantic([f1, f2])
    assert out["protocol"] == "semantic/unseen=skip" and out["N"] == 2
    assert out["miou"] == pytest.approx(2 / 3)
    assert out["F"] == pytest.approx((1 + 0.8125 + 0.65 / 1.15) / 3)
    assert out["miou_fg"] == pytest.approx(0.5)  # classes 1, 2
    assert out["classes_seen"] == 3 and out["classes_unseen"] == 1
    assert np.isnan(out["miou_per_class"][3])
    zero = summarize_semantic([f1, f2], unseen="zero")
    assert zero["miou"] == pytest.approx(2 / 4)  # unseen class 3 counts as 0
    with pytest.raises(DataError):
        semantic_frame(np.zeros((4, 2, 2)), np.full((2, 2), 4))
