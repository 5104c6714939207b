"""Splitting inputs along the batch axis and joining the outputs (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from tritonkit_client._batching import batch_size_of, chunk_inputs, merge_batches, split_batches
from tritonkit_client.errors import InvalidInputError


@pytest.mark.parametrize(
    ("total", "size", "expected"),
    [
        (10, 4, [(0, 4), (4, 8), (8, 10)]),
        (8, 4, [(0, 4), (4, 8)]),
        (3, 4, [(0, 3)]),
        (1, 1, [(0, 1)]),
        (0, 4, []),
        (130, 64, [(0, 64), (64, 128), (128, 130)]),
    ],
)
def test_split_batches(total: int, size: int, expected: list[tuple[int, int]]) -> None:
    chunks = split_batches(total, size)
    assert [(c.start, c.stop) for c in chunks] == expected
    assert sum(c.stop - c.start for c in chunks) == total
    assert all(c.stop - c.start <= size for c in chunks)


def test_split_batches_rejects_nonsense() -> None:
    with pytest.raises(InvalidInputError):
        split_batches(10, 0)
    with pytest.raises(InvalidInputError):
        split_batches(-1, 4)


def test_split_then_merge_restores_the_batch() -> None:
    x = np.arange(33 * 2, dtype=np.float32).reshape(33, 2)
    labels = np.array([[str(i).encode()] for i in range(33)], dtype=object)
    parts = [{"Y": x[c] * 2, "L": labels[c]} for c in split_batches(33, 8)]
    merged = merge_batches(parts)
    np.testing.assert_array_equal(merged["Y"], x * 2)
    assert merged["L"].dtype == np.object_
    assert list(merged["L"][:, 0]) == [str(i).encode() for i in range(33)]
    assert merge_batches([]) == {}


def test_merge_refuses_chunks_with_different_tails() -> None:
    with pytest.raises(InvalidInputError, match="non-batch shapes"):
        merge_batches([{"Y": np.zeros((2, 3))}, {"Y": np.zeros((2, 4))}])


def test_batch_size_of() -> None:
    assert batch_size_of({"a": np.zeros((5, 2)), "b": np.zeros((5,))}) == 5
    with pytest.raises(InvalidInputError, match="disagree"):
        batch_size_of({"a": np.zeros((5, 2)), "b": np.zeros((4, 2))})


def test_chunk_inputs_splits_only_what_does_not_fit() -> None:
    arrays = {"X": np.arange(10).reshape(5, 2), "L": np.array([[b"a"]] * 5, dtype=object)}
    for fits in (0, 5, 6):  # 0: the model does not batch
        (single,) = chunk_inputs(arrays, total=5, max_batch_size=fits)
        assert single is arrays
    chunks = chunk_inputs(arrays, total=5, max_batch_size=2)
    assert [c["X"].shape[0] for c in chunks] == [2, 2, 1]
    assert all(set(c) == {"X", "L"} for c in chunks)
    np.testing.assert_array_equal(np.concatenate([c["X"] for c in chunks]), arrays["X"])
    with pytest.raises(InvalidInputError, match="max_batch_size must be >= 0, got -1"):
        chunk_inputs(arrays, total=5, max_batch_size=-1)
