"""Charts: the confusion counts are right and the images are drawn (not blank)."""

import numpy as np
import pytest

from videomae2.plots import confusion_image, confusion_matrix, line_chart, moving_average


def test_confusion_matrix_counts():
    m = confusion_matrix([0, 1, 2, 2, 1], [0, 2, 2, 2, 1], 3)
    assert m.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 2]]


def test_images_have_content():
    img = confusion_image(confusion_matrix([0, 1], [1, 1], 2), ["left", "right"], "cm")
    assert np.asarray(img).min() < 100  # something dark was drawn
    chart = line_chart({"a": ([0, 1, 2], [3.0, 2.0, 1.0])}, "loss")
    arr = np.asarray(chart)
    assert arr.shape == (400, 640, 3)
    assert ((arr[..., 0] == 31) & (arr[..., 1] == 119)).any()  # the series colour is present
    empty = line_chart({}, "nothing")
    assert np.asarray(empty).shape == (400, 640, 3)


def test_moving_average_is_a_trailing_mean():
    xs, ys = moving_average([1, 2, 3, 4], [4.0, 2.0, 6.0, 0.0], 2)
    assert xs == [1, 2, 3, 4] and ys == [4.0, 3.0, 4.0, 3.0]
    assert moving_average([], [], 5) == ([], [])
    np.testing.assert_allclose(moving_average(range(5), [1.0] * 5, 10)[1], [1.0] * 5)
    with pytest.raises(ValueError, match="window"):
        moving_average([0], [0.0], 0)
