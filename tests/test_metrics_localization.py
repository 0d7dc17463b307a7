"""Localisation protocol: every expected number is computed by hand in the comments."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avfusion.errors import DataError
from avfusion.metrics import Skipped
from avfusion.metrics.localization import (center_heatmap, ciou, full_heatmap,
                                           gt_from_boxes_consensus, gt_from_boxes_union,
                                           resize_bilinear, summarize)


def _box_gt(h, w, y0, y1, x0, x1):
    g = np.zeros((h, w))
    g[y0:y1, x0:x1] = 1
    return g


def test_ciou_median_marks_top_half():
    # heatmap 15..0 row-major; normalised v/15; sorted[16 // 2] = 8/15 -> P = rows 0-1 (8 px).
    # G = 2x2 top-left (4 px): P*G = 4, P*[G==0] = 4 -> 4 / (4 + 4) = 0.5
    heat = np.arange(16)[::-1].reshape(4, 4)
    assert ciou(heat, _box_gt(4, 4, 0, 2, 0, 2)) == pytest.approx(0.5)


def test_ciou_fixed_threshold_is_strict():
    # v/15 > 0.6 <=> v > 9 -> v in 10..15: row 0 and (1,0), (1,1) -> P*G = 4, P*[G==0] = 2 -> 4/6
    heat = torch.arange(16).flip(0).reshape(4, 4).float()
    assert ciou(heat, _box_gt(4, 4, 0, 2, 0, 2), "fixed@0.6") == pytest.approx(2 / 3)
    # v/15 > 8/15 is strict: v = 8 is out -> 7 px: P*G = 4, P*[G==0] = 3 -> 4/7
    assert ciou(heat, _box_gt(4, 4, 0, 2, 0, 2), f"fixed@{8 / 15}") == pytest.approx(4 / 7)


def test_ciou_consensus_weights():
    gt = np.array([[1.0, 0.5], [0.0, 0.0]])
    # median: sorted [1,2,3,4][2] = 3 -> P = (0,0),(0,1): P*G = 1.5, sum G = 1.5, P*[G==0] = 0 -> 1
    assert ciou(np.array([[4.0, 3.0], [2.0, 1.0]]), gt) == pytest.approx(1.0)
    # P = (0,0),(1,0): P*G = 1, sum G = 1.5, P*[G==0] = 1 -> 1 / 2.5
    assert ciou(np.array([[4.0, 1.0], [3.0, 2.0]]), gt) == pytest.approx(0.4)


def test_resize_bilinear_align_corners_then_ciou():
    # 2x2 [[0,1],[2,3]] -> 3x3 with corners kept: rows [0,.5,1], [1,1.5,2], [2,2.5,3]
    up = resize_bilinear(np.array([[0.0, 1.0], [2.0, 3.0]]), 3)
    np.testing.assert_allclose(up, [[0, 0.5, 1], [1, 1.5, 2], [2, 2.5, 3]])
    # sorted 9 values [0,.5,1,1,1.5,2,2,2.5,3][4] = 1.5 -> P = {1.5,2,2,2.5,3} (5 px);
    # G = bottom row (3 px, all in P) -> 3 / (3 + 2) = 0.6
    assert ciou(np.array([[0.0, 1.0], [2.0, 3.0]]), _box_gt(3, 3, 2, 3, 0, 3)) == pytest.approx(0.6)


@pytest.mark.parametrize("binarize", ["median", "fixed@0.5", "fixed@0.99"])
def test_constant_heatmap_is_whole_image(binarize):
    # whole image predicted: P*G = 4, P*[G==0] = 12 -> 4 / 16
    assert ciou(full_heatmap(4), _box_gt(4, 4, 0, 2, 0, 2), binarize) == pytest.approx(0.25)


def test_summarize_ap50_auc_mean():
    # success at t = 0.05 i: i=0 -> 1; i=1..6 (t <= 0.3) -> 3/4; i=7..10 (t <= 0.5) -> 2/4;
    # i=11..16 -> 1/4; i=17..20 -> 0. Trapezoid = 0.05 * (sum - (first + last) / 2)
    # = 0.05 * (1 + 4.5 + 2 + 1.5 + 0 - 0.5) = 0.425. AP50 = 2/4, mean = 1.64 / 4 = 0.41.
    out = summarize([0.0, 0.32, 0.5, 0.82, Skipped("no annotation")], protocol="ciou/median")
    assert out["protocol"] == "ciou/median" and out["N"] == 4
    assert out["skipped"] == {"no annotation": 1}
    assert out["AP50"] == pytest.approx(0.5)
    assert out["AUC"] == pytest.approx(0.425)
    assert out["mean_ciou"] == pytest.approx(0.41)


def test_summarize_perfect_and_empty():
    # all cIoU = 1: success 1 at every threshold -> AUC 1
    assert summarize([1.0, 1.0])["AUC"] == pytest.approx(1.0)
    assert np.isnan(summarize([])["AP50"])


def test_consensus_gt_scaling_and_rasterisation():
    # size 8 from orig 16 (scale 1/2, floored): (1,1,9,9) -> (0,0,4,4); (4,4,16,16) -> (2,2,8,8)
    gt = gt_from_boxes_consensus([[1, 1, 9, 9], [4, 4, 16, 16]], size=8, orig_size=16)
    assert gt.shape == (8, 8)
    assert gt[0, 0] == 0.5 and gt[3, 3] == 1.0 and gt[5, 5] == 0.5  # one / two / one annotator
    assert gt[0, 4] == 0.0 and gt[4, 0] == 0.0  # x1 = 4 is exclusive
    assert gt[0, 3] == 0.5 and gt[7, 7] == 0.5
    # sum: 16 + 36 px at 0.5, overlap 4 px raised to 1 -> (16 + 36 - 8) * 0.5 + 4 * 1 = 26
    assert gt.sum() == pytest.approx(26.0)
    # three boxes on one pixel: 3 / 2 -> clipped to 1
    assert gt_from_boxes_consensus([[0, 0, 2, 2]] * 3, size=2, orig_size=2).max() == 1.0


def test_union_gt_normalised_boxes():
    # h=4, w=8: (.25,.5,.5,1) -> x [2,4), y [2,4): 4 px; (.375,.5,.625,.75) -> x [3,5), y [2,3):
    # adds (2,4) -> 5 px; (-.5,0,.2,2) clipped -> x [0, floor(1.6)=1), y [0,4): 4 px -> 9 px
    gt = gt_from_boxes_union([[0.25, 0.5, 0.5, 1.0], [0.375, 0.5, 0.625, 0.75],
                              [-0.5, 0.0, 0.2, 2.0]], size=(4, 8))
    expected = np.zeros((4, 8))
    expected[2:4, 2:4] = 1
    expected[2, 4] = 1
    expected[:, 0] = 1
    np.testing.assert_array_equal(gt, expected)


def test_center_heatmap_values():
    # size 5, sigma 0.25 -> std 1.25 px: centre 1; (2, 4): x = 2 / 1.25 = 1.6 -> exp(-1.28)
    h = center_heatmap(5)
    assert h[2, 2] == pytest.approx(1.0)
    assert h[2, 4] == pytest.approx(np.exp(-1.28))
    np.testing.assert_allclose(h, h[::-1, ::-1])
    # median keeps the central half: a centred box is found better than by `full`
    gt = _box_gt(8, 8, 2, 6, 2, 6)
    assert ciou(center_heatmap(8), gt) > ciou(full_heatmap(8), gt)


def test_empty_ground_truth_scores_zero_as_ez_vsl():
    # a VGG-SS entry whose only boxes have no area: EZ-VSL's formula gives 0 / (0 + |P|) = 0
    heatmap = np.arange(16.0).reshape(4, 4)
    for rule in ("median", "fixed@0.5", "fixed@2"):
        assert ciou(heatmap, np.zeros((4, 4)), rule) == 0.0
    assert summarize([0.0, 1.0])["AP50"] == 0.5


def test_errors():
    gt = _box_gt(4, 4, 0, 2, 0, 2)
    with pytest.raises(ValueError):
        ciou(np.ones((4, 4)), gt, "top50")
    with pytest.raises(ValueError):
        ciou(np.ones((4, 4)), gt, "fixed@half")
    with pytest.raises(DataError):
        ciou(np.ones((1, 4, 4)), gt)
    with pytest.raises(DataError):
        ciou(np.full((4, 4), np.nan), gt)
    with pytest.raises(DataError):
        gt_from_boxes_union([[0.5, 0.5, 0.1, 0.9]])
    with pytest.raises(DataError):
        gt_from_boxes_consensus([])


@pytest.mark.parametrize("size,rule", [(14, "median"), (7, "fixed@0.5"), (224, "median"), (6, "fixed@0.5")])
def test_a_constant_heatmap_predicts_the_whole_image_at_any_resolution(size, rule):
    """A constant map binarises to the whole image whatever its resolution: resizing it must not create
    the ~1e-8 ripple that min-max normalisation used to stretch into a pattern (99.1 % / 0.9 % marked)."""
    gt = np.zeros((224, 224))
    gt[20:80, 100:180] = 1.0   # 4,800 of 50,176 pixels
    expected = gt.sum() / gt.size  # every pixel predicted: sum(G) / (sum(G) + sum(G == 0))
    assert ciou(np.full((size, size), 0.37), gt, rule) == pytest.approx(expected, abs=1e-12)
    assert ciou(torch.full((size, size), -2.0), gt, rule) == pytest.approx(expected, abs=1e-12)
