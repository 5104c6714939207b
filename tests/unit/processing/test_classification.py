"""tritonkit.processing.classification against naive per-row references."""

from __future__ import annotations

import numpy as np
import pytest

from tritonkit.processing.classification import label_table, lookup_labels, softmax, top_k
from tritonkit.processing.step_api import StepInputError


def naive_softmax(row: np.ndarray) -> np.ndarray:
    e = np.exp(row.astype(np.float64) - row.max())
    return e / e.sum()


def test_softmax_matches_naive_and_is_stable() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 5, (32, 10)).astype(np.float32)
    logits[0] += 1000.0  # would overflow a naive exp without the shift
    logits[1] -= 1000.0
    probs = softmax(logits)
    assert probs.dtype == np.float32
    assert np.all(np.isfinite(probs))
    expected = np.stack([naive_softmax(r) for r in logits])
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_softmax_keeps_float64() -> None:
    assert softmax(np.zeros((2, 3))).dtype == np.float64
    np.testing.assert_allclose(softmax(np.zeros((2, 4))), 0.25)


def test_softmax_nan_row_stays_nan_without_spoiling_others() -> None:
    x = np.array([[1.0, np.nan, 0.0], [1.0, 2.0, 3.0]], dtype=np.float32)
    p = softmax(x)
    assert np.isnan(p[0]).all()
    np.testing.assert_allclose(p[1], naive_softmax(x[1]), rtol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 9, 10])
def test_top_k_matches_full_sort(k: int) -> None:
    rng = np.random.default_rng(k)
    probs = rng.random((50, 10)).astype(np.float32)
    indices, scores = top_k(probs, k)
    expected = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    assert indices.dtype == np.int32 and scores.dtype == np.float32
    assert indices.shape == scores.shape == (50, k)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(scores, np.take_along_axis(probs, expected, axis=1))


def test_top_k_orders_ties_by_index() -> None:
    probs = np.array([[0.1, 0.4, 0.4, 0.1], [0.25, 0.25, 0.25, 0.25]], dtype=np.float32)
    indices, _ = top_k(probs, 2)
    np.testing.assert_array_equal(indices[0], [1, 2])
    indices, _ = top_k(probs, 4)
    np.testing.assert_array_equal(indices, [[1, 2, 0, 3], [0, 1, 2, 3]])


@pytest.mark.parametrize("k", [0, 11, -1])
def test_top_k_out_of_range(k: int) -> None:
    with pytest.raises(StepInputError, match="top_k"):
        top_k(np.zeros((1, 10), np.float32), k)


def test_top_k_needs_2d() -> None:
    with pytest.raises(StepInputError, match="batch, classes"):
        top_k(np.zeros(10, np.float32), 1)


def test_lookup_labels_with_fallback_for_missing_names() -> None:
    indices = np.array([[2, 0], [3, 1]], dtype=np.int32)
    labels = lookup_labels(indices, ["zero", "one", "two"], 4)
    assert labels.dtype == np.object_
    assert labels.tolist() == [[b"two", b"zero"], [b"3", b"one"]]
    assert lookup_labels(indices, [], 4).tolist() == [[b"2", b"0"], [b"3", b"1"]]


def test_label_table_is_cached_and_utf8() -> None:
    table = label_table(("ünïcode", "b"), 2)
    assert table is label_table(("ünïcode", "b"), 2)
    assert table[0] == "ünïcode".encode()
    assert not table.flags.writeable
