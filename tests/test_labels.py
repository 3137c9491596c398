"""Class labels are checked once and encoded as the core takes them."""

import numpy as np
import pytest

from dnc_jax.labels import as_class_labels, one_hot_pm1


def test_integral_labels_of_any_dtype_become_int64():
    y = as_class_labels("y", np.array([0.0, 2.0, 1.0]))
    assert y.dtype == np.int64 and y.tolist() == [0, 2, 1]
    assert as_class_labels("y", np.array([3, 0], np.uint8)).tolist() == [3, 0]


@pytest.mark.parametrize("labels, match", [
    (np.eye(3), "one-hot"),
    (np.array([[0], [1]]), "1-D"),
    (np.array([0, -1]), ">= 0"),
    (np.array([0.0, 1.5]), "integer class labels"),
    (np.array([0.0, np.nan]), "integer class labels"),
    (np.array(["a", "b"]), "integer class labels"),
])
def test_labels_that_are_not_classes_are_refused_by_name(labels, match):
    with pytest.raises(ValueError, match=f"y_train.*{match}|{match}"):
        as_class_labels("y_train", labels)


def test_one_hot_pm1():
    Y = one_hot_pm1(np.array([1, 0]), 3)
    assert Y.dtype == np.float32
    np.testing.assert_array_equal(Y, [[-1.0, 1.0, -1.0], [1.0, -1.0, -1.0]])
