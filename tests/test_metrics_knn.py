"""k-NN retrieval monitor (protocol knn-loo) on cases worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from avfusion.errors import DataError
from avfusion.metrics.knn import knn_accuracy, knn_neighbours, knn_predict, l2_normalize, summarize


def unit(deg: float, scale: float = 1.0) -> list[float]:
    return [scale * math.cos(math.radians(deg)), scale * math.sin(math.radians(deg))]


def test_the_query_itself_is_left_out():
    # Pairs of identical vectors with different labels: including the query would score 1.0.
    feats = [[1, 0], [2, 0], [0, 1], [0, 3]]  # scale does not matter (L2-normalised)
    labels = [0, 1, 1, 0]
    assert knn_predict(feats, labels, k=1).tolist() == [1, 0, 0, 1]
    assert knn_accuracy(feats, labels, k=1) == 0.0


def test_equal_similarity_goes_to_the_lower_index():
    idx, sim = knn_neighbours([[1, 0], [0, 1], [0, -1]], k=2)
    assert idx[0].tolist() == [1, 2] and sim[0].tolist() == [0.0, 0.0]
    assert knn_predict([[1, 0], [0, 1], [0, -1]], [0, 2, 1], k=1)[0] == 2


def test_votes_then_summed_similarity_then_lower_class():
    # Query at 0 deg; neighbours at 20 deg (class 0), 70 and 80 deg (class 1): two votes beat one,
    # although class 0 has the larger summed similarity (cos 20 = .94 > cos 70 + cos 80 = .52).
    feats = [unit(0), unit(20), unit(70), unit(80)]
    assert knn_predict(feats, [5, 0, 1, 1], k=3)[0] == 1
    # One vote each: the larger similarity (cos 30 > cos 40) wins, whatever the class index.
    assert knn_predict([unit(0), unit(40), unit(-30)], [0, 1, 2], k=2)[0] == 2
    # One vote each, equal similarity (+-90 deg): the lower class index.
    assert knn_predict([unit(0), unit(90), unit(-90)], [0, 3, 2], k=2)[0] == 2


def test_accuracy_by_hand():
    # Two clusters around 0 and 90 deg, plus item 4 (label 1) sitting in cluster 0 at 2 deg.
    feats = [unit(0), unit(6), unit(90), unit(84), unit(2)]
    labels = [0, 0, 1, 1, 1]
    # 1-NN: 0 -> 4 (2 deg away), 1 -> 4 (4), 2 -> 3 (6), 3 -> 2 (6), 4 -> 0 (2): right for items 2 and 3.
    assert knn_predict(feats, labels, k=1).tolist() == [1, 1, 1, 1, 0]
    assert knn_accuracy(feats, labels, k=1) == pytest.approx(2 / 5)
    # 3-NN: 0 -> {4, 1, 3}: labels 1, 0, 1 -> 1;  4 -> {0, 1, 3}: 0, 0, 1 -> 0;  2 -> {3, 1, 4}: 1, 0, 1 -> 1.
    assert knn_predict(feats, labels, k=3).tolist() == [1, 1, 1, 1, 0]


def test_multi_label_scores_and_map():
    feats = [unit(0), unit(10), unit(90), unit(100)]
    labels = np.array([[1, 0, 1], [1, 0, 0], [0, 1, 0], [0, 1, 1]])
    scores = knn_predict(feats, labels, k=1)
    cos10 = math.cos(math.radians(10))
    np.testing.assert_allclose(scores[0], [cos10, 0, 0])  # its neighbour's labels x similarity
    np.testing.assert_allclose(scores[3], [0, cos10, 0])
    out = summarize({"image": feats}, labels, ks=(1,))
    assert out["metric"] == "mAP" and out["N"] == 4
    # Scores (c = cos 10): item 0 [c,0,0], 1 [c,0,c], 2 [0,c,c], 3 [0,c,0]. Classes 0 and 1: AP 1.
    # Class 2 (positives 0 and 3): negatives 1 and 2 tie first at c, then both positives at 0:
    # AP = (recall 1 - 0) x precision 2/4 = 0.5.
    assert out["image"][1] == pytest.approx((1 + 1 + 0.5) / 3)


def test_summary_and_errors():
    feats = {"image": [unit(0), unit(5), unit(90)], "audio": [unit(0), unit(90), unit(5)]}
    out = summarize(feats, [0, 0, 1], ks=(1,))
    assert out == {"protocol": "knn-loo", "N": 3, "skipped": {}, "metric": "top1",
                   "image": {1: pytest.approx(2 / 3)}, "audio": {1: 0.0}}
    with pytest.raises(DataError, match="k = 3 needs at least 4 items"):
        knn_neighbours([[1, 0], [0, 1], [1, 1]], k=3)
    with pytest.raises(DataError):
        knn_predict([[1, 0], [0, 1]], [0, 1, 1], k=1)
    np.testing.assert_allclose(l2_normalize([[3, 4], [0, 0]]), [[0.6, 0.8], [0, 0]])
