"""Classification post-processing: softmax, top-k and label lookup, vectorized over the batch."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from tritonkit.processing.step_api import StepInputError


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis; float32 unless the input is float64.

    Rows holding NaN or Inf give NaN rows (callers check `np.isfinite` first).
    """
    x = np.asarray(logits)
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    x = x.astype(dtype, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        shifted = x - np.max(x, axis=-1, keepdims=True)
        exp = np.exp(shifted)
        exp /= np.sum(exp, axis=-1, keepdims=True)
    return exp


def top_k(probabilities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (int32 [B, k]) and scores (float32 [B, k]) of the k largest values per row.

    Sorted by descending score; among equal scores the lower index comes first (ties at
    the k-th place itself may pick either).
    """
    p = np.asarray(probabilities)
    if p.ndim != 2:
        raise StepInputError(f"top_k expects a [batch, classes] array, got shape {p.shape}")
    classes = p.shape[1]
    if not 1 <= k <= classes:
        raise StepInputError(f"top_k must be between 1 and {classes} (classes), got {k}")
    if k < classes:
        candidates = np.argpartition(-p, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(classes), p.shape)
    candidate_scores = np.take_along_axis(p, candidates, axis=1)
    # Primary key: score descending; secondary: class index ascending (lexsort: last key first).
    order = np.lexsort((candidates, -candidate_scores), axis=1)
    indices = np.take_along_axis(candidates, order, axis=1).astype(np.int32)
    scores = np.take_along_axis(candidate_scores, order, axis=1).astype(np.float32)
    return indices, scores


@lru_cache(maxsize=32)
def label_table(labels: tuple[str, ...], classes: int) -> np.ndarray:
    """Object array of UTF-8 bytes, one per class; classes without a label get str(index)."""
    names = [labels[i] if i < len(labels) else str(i) for i in range(classes)]
    table = np.empty(classes, dtype=np.object_)
    table[:] = [name.encode("utf-8") for name in names]
    table.setflags(write=False)
    return table


def lookup_labels(indices: np.ndarray, labels: Sequence[str], classes: int) -> np.ndarray:
    """Labels (object array of bytes, same shape as `indices`) for class indices < classes."""
    table = label_table(tuple(labels), classes)
    return table[np.asarray(indices)]
