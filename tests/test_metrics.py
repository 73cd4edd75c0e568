"""AccMetric oracles from mmaction2's own unit tests (spec test-protocol.md §9)."""

import numpy as np
import pytest

from videomae2.metrics import accuracy_metrics, mean_class_accuracy, top_k_accuracy

SCORES = np.array(
    [
        [-0.2203, -0.7538, 1.8789, 0.4451, -0.2526],
        [-0.0413, 0.6366, 1.1155, 0.3484, 0.0395],
        [0.0365, 0.5158, 1.1067, -0.9276, -0.2124],
        [0.6232, 0.9912, -0.8562, 0.0148, 1.6413],
    ]
)


@pytest.mark.parametrize(
    "labels,top1",
    [
        ([3, 1, 1, 1], 0.0),
        ([2, 0, 4, 3], 0.25),
        ([2, 2, 3, 1], 0.5),
        ([2, 2, 2, 3], 0.75),
        ([2, 2, 2, 4], 1.0),
    ],
)
def test_top1(labels, top1):
    assert top_k_accuracy(SCORES, np.array(labels), (1,)) == [top1]


@pytest.mark.parametrize(
    "labels,expected", [([1, 0, 3, 2], [0, 0, 1.0]), ([2, 3, 0, 2], [0.25, 0.75, 1.0])]
)
def test_top_1_3_5(labels, expected):
    assert top_k_accuracy(SCORES, np.array(labels), (1, 3, 5)) == pytest.approx(expected)


@pytest.mark.parametrize(
    "labels,mean1",
    [
        ([1, 4, 0, 2], 0.0),
        ([2, 0, 4, 3], 0.25),
        ([2, 2, 2, 3], 1 / 3),
        ([4, 2, 2, 4], 0.75),
        ([2, 2, 2, 4], 1.0),
    ],
)
def test_mean_class(labels, mean1):
    assert mean_class_accuracy(SCORES, np.array(labels)) == pytest.approx(mean1)


def test_keys():
    out = accuracy_metrics(SCORES, np.array([2, 2, 2, 4]))
    assert set(out) == {"acc/top1", "acc/top5", "acc/mean1"}
    with pytest.raises(ValueError, match="unknown metric"):
        accuracy_metrics(SCORES, np.array([2, 2, 2, 4]), metrics=("f1",))
