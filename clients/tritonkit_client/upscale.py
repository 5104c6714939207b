"""Super-resolution through a pipeline that takes one encoded image (PNG or JPEG, BYTES [1, 1])
and returns the upscaled image, PNG BYTES [1, 1] (a PNG file), with its size, SIZE INT32 [1, 2]
(height, width) (the `super_resolution` pipeline of models.yaml).

Images of different sizes cannot share a batch, so every image is its own request; the asyncio
twin keeps several in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonkit_client.async_client import AsyncTritonClient
from tritonkit_client.errors import InvalidInputError, ServerError
from tritonkit_client.sync_client import TritonClient
from tritonkit_client.tasks import images_tensor

IMAGE_OUTPUT = "PNG"
SIZE_OUTPUT = "SIZE"


@dataclass(frozen=True, kw_only=True)
class UpscaledImage:
    """The server's answer for one image: the PNG file's bytes and its size in pixels."""

    png: bytes
    height: int
    width: int


def parse_upscaled(outputs: dict[str, NDArray[Any]]) -> UpscaledImage:
    """The one image of a response (PNG [1, 1] bytes, SIZE [1, 2])."""
    try:
        image, size = np.asarray(outputs[IMAGE_OUTPUT]), np.asarray(outputs[SIZE_OUTPUT])
    except KeyError as e:
        raise ServerError(f"the super-resolution pipeline did not return output {e}") from e
    if image.size != 1 or size.size != 2:
        raise ServerError(f"unexpected super-resolution output shapes: image {image.shape}, "
                          f"size {size.shape}")
    png = image.reshape(-1)[0]
    if not isinstance(png, bytes) or not png:
        raise ServerError("the super-resolution pipeline returned an empty image")
    height, width = (int(v) for v in size.reshape(-1))
    return UpscaledImage(png=png, height=height, width=width)


def _request(image: bytes, image_input: str) -> dict[str, NDArray[Any]]:
    if not isinstance(image, bytes | bytearray | memoryview):
        raise InvalidInputError(f"expected the encoded image as bytes, got {type(image).__name__}")
    return {image_input: images_tensor([bytes(image)])}


def upscale(
    client: TritonClient,
    model: str,
    images: Sequence[bytes],
    *,
    version: str = "",
    image_input: str = "IMAGE",
) -> list[UpscaledImage]:
    """Upscale encoded images, one request each; results in input order.

    A rejected image (undecodable, empty, over the pipeline's size bound) raises
    `InvalidInputError` naming the server's reason; earlier results are not kept.
    """
    return [
        parse_upscaled(client.infer(model, _request(image, image_input),
                                    outputs=[IMAGE_OUTPUT, SIZE_OUTPUT], version=version))
        for image in images
    ]


async def upscale_async(
    client: AsyncTritonClient,
    model: str,
    images: Sequence[bytes],
    *,
    version: str = "",
    image_input: str = "IMAGE",
    concurrency: int = 4,
) -> list[UpscaledImage]:
    """The asyncio twin of `upscale`; up to `concurrency` images are in flight."""
    if concurrency < 1:
        raise InvalidInputError(f"concurrency must be >= 1, got {concurrency}")
    limit = asyncio.Semaphore(concurrency)

    async def one(image: bytes) -> UpscaledImage:
        async with limit:
            outputs = await client.infer(model, _request(image, image_input),
                                         outputs=[IMAGE_OUTPUT, SIZE_OUTPUT], version=version)
        return parse_upscaled(outputs)

    return list(await asyncio.gather(*(one(image) for image in images)))
