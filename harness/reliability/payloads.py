"""Valid and deliberately broken payloads: encoded images, text, numeric rows.

Valid data is deterministic, so answers to the same valid request can be compared byte for
byte. Broken images are built here from real encoders (PIL) and then damaged, so each one
is broken in exactly one named way.
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import lru_cache

import numpy as np
from PIL import Image

from harness.reliability.targets import InputKind, TensorInfo

_NUMPY = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    "BYTES": np.object_,
}
VALID_TEXT = "The quick brown fox jumps over the lazy dog."


def numpy_dtype(datatype: str) -> np.dtype:
    return np.dtype(_NUMPY[datatype])


def encode_image(array: np.ndarray, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


@lru_cache(maxsize=1)
def valid_png() -> bytes:
    """An 8x8 grayscale PNG of a diagonal stroke (decodes everywhere, any target resizes)."""
    image = np.zeros((8, 8), dtype=np.uint8)
    np.fill_diagonal(image, 255)
    image[:, 3] = 128
    return encode_image(image, "PNG")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_with_header(width: int, height: int, *, idat: bytes = b"") -> bytes:
    """A PNG whose IHDR claims `width` x `height` (8-bit grayscale), with the given IDAT."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunks = _png_chunk(b"IHDR", header)
    if idat:
        chunks += _png_chunk(b"IDAT", idat)
    return b"\x89PNG\r\n\x1a\n" + chunks + _png_chunk(b"IEND", b"")


@lru_cache(maxsize=1)
def png_bomb() -> bytes:
    """A real, valid 6000x6000 all-black PNG: ~36 MB of pixels in a few tens of KB."""
    width = height = 6000
    raw = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    data = b"".join(raw.compress(row) for _ in range(height)) + raw.flush()
    return png_with_header(width, height, idat=data)


@lru_cache(maxsize=1)
def broken_images() -> dict[str, bytes]:
    """Encoded images broken in one named way each."""
    png = valid_png()
    gray = np.full((8, 8), 90, dtype=np.uint8)
    jpeg = encode_image(gray, "JPEG", quality=90)
    corrupt = bytearray(png)
    idat = png.index(b"IDAT")
    for i in range(idat + 4, min(idat + 20, len(corrupt) - 12)):
        corrupt[i] ^= 0xA5
    return {
        "image_empty": b"",
        "image_truncated_png": png[: len(png) // 2],
        "image_corrupt_png": bytes(corrupt),
        "image_huge_header": png_with_header(20000, 20000, idat=zlib.compress(b"\x00" * 64)),
        "image_decompression_bomb": png_bomb(),
        "image_zero_size_header": png_with_header(0, 0),
        "image_truncated_jpeg": jpeg[: len(jpeg) // 2],
        "image_unsupported_gif": encode_image(gray, "GIF"),
        "image_unsupported_bmp": encode_image(gray, "BMP"),
        "image_unsupported_webp": b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 24,
        "image_random_bytes": np.random.default_rng(5).integers(0, 256, 512, np.uint8).tobytes(),
        "image_text_instead": b"this is not an image",
    }


def valid_element(tensor: TensorInfo) -> bytes:
    if tensor.kind is InputKind.IMAGE:
        return valid_png()
    return VALID_TEXT.encode()


def valid_array(tensor: TensorInfo, rows: int | None, *, seed: int = 0) -> np.ndarray:
    """A valid value for `tensor`: `rows` along the batch axis (None: the model does not batch)."""
    dims = tensor.concrete_dims()
    shape = dims if rows is None else (rows, *dims)
    dtype = numpy_dtype(tensor.datatype)
    if dtype == np.object_:
        return np.full(shape, valid_element(tensor), dtype=np.object_)
    rng = np.random.default_rng(seed)
    if tensor.kind is InputKind.FLOAT:
        return rng.standard_normal(shape).astype(dtype)
    if tensor.kind is InputKind.BOOL:
        return np.ones(shape, dtype=dtype)
    return np.ones(shape, dtype=dtype)


def serialize_bytes(array: np.ndarray) -> bytes:
    """BYTES elements as Triton's raw form: a 4-byte little-endian length, then the bytes."""
    out = bytearray()
    for element in array.reshape(-1):
        data = element if isinstance(element, bytes) else str(element).encode()
        out += struct.pack("<I", len(data)) + data
    return bytes(out)


def raw_bytes(array: np.ndarray) -> bytes:
    """The raw (binary) wire form of an array."""
    if array.dtype == np.object_:
        return serialize_bytes(array)
    return np.ascontiguousarray(array).tobytes()
