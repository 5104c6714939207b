"""Classification helpers: the BYTES image tensor and parsing of LABELS/SCORES/CLASS_INDICES."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from tritonkit_client.async_client import connect_async
from tritonkit_client.errors import InvalidInputError, ServerError, ServerUnavailableError
from tritonkit_client.sync_client import connect
from tritonkit_client.tasks import (
    Classification,
    classify,
    classify_async,
    images_tensor,
    parse_classifications,
)


def test_images_tensor_is_an_object_array_of_shape_n_by_1() -> None:
    tensor = images_tensor([b"\x89PNG\x00\x00", bytearray(b"jpg")])
    assert tensor.shape == (2, 1)
    assert tensor.dtype == np.object_
    assert tensor[0, 0] == b"\x89PNG\x00\x00"  # trailing NULs kept (numpy "S" would drop them)
    assert tensor[1, 0] == b"jpg"


@pytest.mark.parametrize("bad", [["not bytes"], [b""]])
def test_images_tensor_rejects(bad: list[object]) -> None:
    with pytest.raises(InvalidInputError, match="image 0"):
        images_tensor(bad)  # type: ignore[arg-type]


def test_parse_classifications_sorts_by_score_and_cuts_to_top_k() -> None:
    labels = np.array([[b"1", b"7", b"2"], [b"3", b"8", b"5"]], dtype=object)
    scores = np.array([[0.1, 0.8, 0.1], [0.6, 0.3, 0.1]], dtype=np.float32)
    indices = np.array([[1, 7, 2], [3, 8, 5]], dtype=np.int32)
    full = parse_classifications(labels, scores, indices)
    assert [[c.index for c in row] for row in full] == [[7, 1, 2], [3, 8, 5]]
    assert full[0][0] == Classification(label="7", score=float(np.float32(0.8)), index=7)
    top1 = parse_classifications(labels, scores, indices, top_k=1)
    assert [[c.label for c in row] for row in top1] == [["7"], ["3"]]
    more = parse_classifications(labels, scores, indices, top_k=10)
    assert [len(row) for row in more] == [3, 3]  # never more than the server sent


def test_parse_classifications_accepts_one_prediction_per_image() -> None:
    result = parse_classifications(np.array(["cat", "dog"]), np.array([0.9, 0.7]), np.array([3, 5]))
    assert result == [
        [Classification(label="cat", score=0.9, index=3)],
        [Classification(label="dog", score=0.7, index=5)],
    ]


def test_parse_classifications_rejects_mismatched_outputs() -> None:
    with pytest.raises(ServerError, match="disagree"):
        parse_classifications(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(InvalidInputError, match="top_k"):
        parse_classifications(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1)), top_k=0)


def test_classify_with_no_images_sends_nothing(closed_port: int) -> None:
    with connect(f"http://127.0.0.1:{closed_port}", retries=0) as client:
        assert classify(client, "digits", []) == []
        with pytest.raises(InvalidInputError):
            classify(client, "digits", [b"x"], top_k=0)
        with pytest.raises(ServerUnavailableError):
            classify(client, "digits", [b"x"])


def test_classify_async_with_no_images_sends_nothing(closed_port: int) -> None:
    async def run() -> list[list[Classification]]:
        async with connect_async(f"grpc://127.0.0.1:{closed_port}", retries=0) as client:
            with pytest.raises(ServerUnavailableError):
                await classify_async(client, "digits", [b"x"])
            return await classify_async(client, "digits", [])

    assert asyncio.run(run()) == []
