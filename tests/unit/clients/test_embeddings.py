"""tritonkit_client.embeddings: the BYTES tensor of texts and output checks."""

from __future__ import annotations

import numpy as np
import pytest
from tritonkit_client import InvalidInputError, ServerError
from tritonkit_client.embeddings import _embeddings, texts_tensor


def test_texts_tensor_is_utf8_bytes_one_per_row() -> None:
    tensor = texts_tensor(["café", ""])
    assert tensor.shape == (2, 1) and tensor.dtype == np.object_
    assert tensor[:, 0].tolist() == ["café".encode(), b""]
    with pytest.raises(InvalidInputError, match="text 0"):
        texts_tensor([b"bytes"])  # type: ignore[list-item]


def test_embeddings_output_is_checked() -> None:
    vectors = _embeddings({"EMBEDDING": np.ones((2, 3))}, "EMBEDDING", 2)
    assert vectors.dtype == np.float32
    with pytest.raises(ServerError, match="2 embedding rows"):
        _embeddings({"EMBEDDING": np.ones((1, 3))}, "EMBEDDING", 2)
