"""System shared memory for inputs and outputs, sync and asyncio, over HTTP and gRPC.

The digits pipeline's PROBABILITIES is a fixed-size FP32 output: it comes back through shared
memory. Its classification (class_counts) is a BYTES answer made by the server: it cannot.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from tritonkit_client import InvalidInputError, connect, connect_async
from tritonkit_client.tasks import images_tensor

from examples.model_zoo.digits import INPUT_NAME, OUTPUT_NAME, encoded_split, preprocess
from tritonkit.server.local_triton import ServerURLs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def samples() -> tuple[list[bytes], np.ndarray]:
    images, _ = encoded_split("test")
    return images[:16], preprocess(images[:16])


@pytest.fixture(params=["http", "grpc"])
def url(request: pytest.FixtureRequest, triton: ServerURLs) -> str:
    return triton.http if request.param == "http" else triton.grpc


def shm_regions() -> set[str]:
    return {p.name for p in Path("/dev/shm").iterdir()}


def test_shared_memory_equals_plain_inference(url: str, samples) -> None:
    images, pixels = samples
    before = shm_regions()
    with connect(url) as client:
        plain = client.infer("digits_classifier", {INPUT_NAME: pixels[:8]})
        shared = client.infer("digits_classifier", {INPUT_NAME: pixels[:8]}, shared_memory=True)
        np.testing.assert_array_equal(plain[OUTPUT_NAME], shared[OUTPUT_NAME])
        tensor = {"IMAGE": images_tensor(images[:4])}
        plain = client.infer("digits", tensor)
        shared = client.infer("digits", tensor, shared_memory=True)
        assert sorted(plain) == sorted(shared) == ["PROBABILITIES"]
        assert shared["PROBABILITIES"].dtype == np.float32
        assert shared["PROBABILITIES"].shape == (4, 10)
        np.testing.assert_array_equal(plain["PROBABILITIES"], shared["PROBABILITIES"])
        # The same images through the pipeline's core model: the ensemble's probabilities
        np.testing.assert_array_equal(shared["PROBABILITIES"],
                                      client.infer("digits_classifier",
                                                   {INPUT_NAME: pixels[:4]})[OUTPUT_NAME])
        with pytest.raises(InvalidInputError, match="shared_memory"):
            client.infer("digits", tensor, outputs=["PROBABILITIES"],
                         class_counts={"PROBABILITIES": 3}, shared_memory=True)
    assert shm_regions() - before == set()  # every region was unregistered and unlinked


def test_shared_memory_async(url: str, samples) -> None:
    _, pixels = samples

    async def run() -> tuple[np.ndarray, np.ndarray]:
        async with connect_async(url) as client:
            plain = await client.infer("digits_classifier", {INPUT_NAME: pixels})
            shared = await client.infer("digits_classifier", {INPUT_NAME: pixels},
                                        shared_memory=True)
            with pytest.raises(InvalidInputError, match="shared_memory"):
                await client.infer("digits_classifier", {INPUT_NAME: pixels},
                                   outputs=[OUTPUT_NAME], class_counts={OUTPUT_NAME: 3},
                                   shared_memory=True)
            return plain[OUTPUT_NAME], shared[OUTPUT_NAME]

    plain, shared = asyncio.run(run())
    np.testing.assert_array_equal(plain, shared)
