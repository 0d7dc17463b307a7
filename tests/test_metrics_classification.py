"""Classification metrics on cases computed by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avfusion.errors import DataError
from avfusion.metrics.classification import (average_precision, d_prime, mean_average_precision,
                                             roc_auc, summarize_multi_label,
                                             summarize_single_label, top1)

# class 0: scores .9 .8 .7 .6 with targets 1 0 1 0
#   AP: cut .9 -> P 1, R .5; .8 -> P .5, R .5; .7 -> P 2/3, R 1; .6 -> P .5, R 1
#       = .5 * 1 + .5 * 2/3 = 5/6
#   AUC: positive/negative pairs (.9,.8) (.9,.6) (.7,.6) won, (.7,.8) lost -> 3/4
# class 1 (ties): scores .9 .5 .5 .1 with targets 0 1 0 1
#   AP: cut .9 -> P 0, R 0; .5 (two items enter together) -> P 1/3, R .5; .1 -> P .5, R 1
#       = .5 * 1/3 + .5 * .5 = 5/12
#   AUC: pairs (.5,.9) 0, (.5,.5) 1/2, (.1,.9) 0, (.1,.5) 0 -> 0.5 / 4 = 1/8
# class 2: no positive -> AP NaN, AUC undefined
SCORES = np.array([[0.9, 0.9, 0.3], [0.8, 0.5, 0.2], [0.7, 0.5, 0.1], [0.6, 0.1, 0.0]])
TARGETS = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]])


def test_top1():
    # argmax = [1, 0, 1] vs labels [1, 1, 1] -> 2/3
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert top1(logits, torch.tensor([1, 1, 1])) == pytest.approx(2 / 3)
    assert top1([[0.5, 0.5]], [0]) == 1.0  # ties go to the lowest index
    with pytest.raises(DataError):
        top1([[0.5, 0.5]], [2])


def test_average_precision_by_hand():
    ap = average_precision(SCORES, TARGETS)
    assert ap[0] == pytest.approx(5 / 6) and ap[1] == pytest.approx(5 / 12)
    assert np.isnan(ap[2])


def test_average_precision_agrees_with_sklearn():
    from sklearn.metrics import average_precision_score
    ap = average_precision(SCORES, TARGETS)
    for c in (0, 1):
        assert ap[c] == pytest.approx(average_precision_score(TARGETS[:, c], SCORES[:, c]))


@pytest.mark.parametrize("variant", ["seen", "nanmean"])
def test_mean_average_precision(variant):
    # (5/6 + 5/12) / 2 = 15/24 over the two classes with positives; one class without
    value, missing = mean_average_precision(SCORES, TARGETS, variant)
    assert value == pytest.approx(15 / 24) and missing == 1
    with pytest.raises(ValueError):
        mean_average_precision(SCORES, TARGETS, "all")


def test_roc_auc_and_d_prime():
    # (3/4 + 1/8) / 2 = 7/16; class 2 has no positive -> skipped
    value, skipped = roc_auc(SCORES, TARGETS)
    assert value == pytest.approx(7 / 16) and skipped == 1
    assert d_prime(0.5) == pytest.approx(0.0)
    assert d_prime(0.8413447460685429) == pytest.approx(np.sqrt(2))  # Phi(1) -> sqrt(2) * 1
    np.testing.assert_allclose(d_prime(np.array([0.5, 0.8413447460685429])), [0, np.sqrt(2)])


def test_summaries():
    out = summarize_multi_label(SCORES, TARGETS, "seen")
    assert out["protocol"] == "mAP/seen" and out["N"] == 4 and out["skipped"] == {}
    assert out["mAP"] == pytest.approx(15 / 24) and out["mAUC"] == pytest.approx(7 / 16)
    assert out["classes_without_positives"] == 1 and out["classes_without_auc"] == 1
    single = summarize_single_label([[0.1, 0.9], [0.8, 0.2]], [1, 1])
    assert single == {"protocol": "top1", "N": 2, "skipped": {}, "top1": 0.5}


def test_errors():
    with pytest.raises(DataError):
        average_precision(SCORES, TARGETS[:, :2])
    with pytest.raises(DataError):
        average_precision(SCORES, TARGETS * 0.5)
    with pytest.raises(DataError):
        mean_average_precision(SCORES, np.zeros_like(TARGETS))
