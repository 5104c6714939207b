"""Classification helpers: the BYTES image tensor and parsing of LABELS/SCORES/CLASS_INDICES."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from tritonkit_client.async_client import connect_async
from tritonkit_client.errors import InvalidInputError, ServerError, ServerUnavailableError
from tritonkit_client.kserve_codec import classification_strings
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


def test_parse_classifications_reads_tritons_answer() -> None:
    answer = np.array([[b"0.800000:7:seven", b"0.100000:1:one"],
                       [b"0.600000:3:three", b"0.300000:8"]], dtype=object)
    result = parse_classifications(answer)
    assert result[0] == [Classification(label="seven", score=0.8, index=7),
                         Classification(label="one", score=0.1, index=1)]
    assert result[1][1] == Classification(label="8", score=0.3, index=8)  # no labels file
    # a label may hold ':' itself
    (row,) = parse_classifications(np.array([b"0.5:2:a:b"], dtype=object))
    assert row == [Classification(label="a:b", score=0.5, index=2)]


def test_parse_classifications_refuses_what_is_not_a_classification() -> None:
    for bad in ([[b"cat"]], [[b"0.5:x:cat"]], [[[b"0.5:1"]]]):
        with pytest.raises(ServerError):
            parse_classifications(np.array(bad, dtype=object))


def test_the_codec_writes_what_triton_answers() -> None:
    values = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], dtype=np.float32)
    answer = classification_strings(values, 2, ["a", "b", "c"])
    assert answer.tolist() == [[b"0.700000:1:b", b"0.200000:2:c"],
                               [b"0.500000:0:a", b"0.250000:1:b"]]
    parsed = parse_classifications(answer)
    assert [[c.index for c in row] for row in parsed] == [[1, 2], [0, 1]]
    assert classification_strings(values, 9).shape == (2, 3)  # never more than there are


def test_classify_with_no_images_sends_nothing(closed_port: int) -> None:
    with connect(f"http://127.0.0.1:{closed_port}", retries=0) as client:
        assert classify(client, "digits", []) == []
        for bad in (0, -1, 1.5, True):
            with pytest.raises(InvalidInputError):
                classify(client, "digits", [b"x"], top_k=bad)  # type: ignore[arg-type]
        with pytest.raises(ServerUnavailableError):
            classify(client, "digits", [b"x"])


def test_classify_async_with_no_images_sends_nothing(closed_port: int) -> None:
    async def run() -> list[list[Classification]]:
        async with connect_async(f"grpc://127.0.0.1:{closed_port}", retries=0) as client:
            with pytest.raises(ServerUnavailableError):
                await classify_async(client, "digits", [b"x"])
            return await classify_async(client, "digits", [])

    assert asyncio.run(run()) == []
