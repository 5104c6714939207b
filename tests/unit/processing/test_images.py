"""tritonkit.processing.images: decoding, safety limits, per-row errors and the normalized NCHW
batch."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from tritonkit.processing.images import (
    InvalidImageError,
    decode_image,
    normalization,
    preprocess_images,
)
from tritonkit.processing.step_api import StepInputError


def encode(array: np.ndarray, fmt: str = "PNG", **kw: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (valid CRC) but which holds no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.fixture
def gray() -> np.ndarray:
    return np.arange(64, dtype=np.uint8).reshape(8, 8) * 4


def run(blobs: list, **overrides: object) -> tuple[np.ndarray, dict[int, str]]:
    params: dict = {"height": 8, "width": 8, "channels": 1, "mean": 0.0, "std": 1.0}
    params.update(overrides)
    return preprocess_images(blobs, **params)


def test_valid_png_is_scaled_exactly(gray: np.ndarray) -> None:
    pixels, errors = run([encode(gray)])
    assert errors == {}
    assert pixels.shape == (1, 1, 8, 8)
    assert pixels.dtype == np.float32
    assert pixels.flags.c_contiguous
    np.testing.assert_allclose(pixels[0, 0], gray / 255.0, rtol=0, atol=1e-7)


def test_valid_jpeg_decodes_close_to_source() -> None:
    flat = np.full((16, 16), 128, dtype=np.uint8)
    pixels, errors = run([encode(flat, "JPEG", quality=95)], height=16, width=16)
    assert errors == {}
    np.testing.assert_allclose(pixels[0, 0], 128 / 255.0, atol=2 / 255)


def test_rgb_to_gray_matches_pil_luma() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    pixels, errors = run([encode(rgb)])
    expected = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32) / 255.0
    assert errors == {}
    np.testing.assert_allclose(pixels[0, 0], expected, atol=1e-7)
    assert not np.allclose(pixels[0, 0], rgb[..., 0] / 255.0)  # really converted, not R


def test_gray_to_rgb_replicates_and_normalizes_per_channel(gray: np.ndarray) -> None:
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    pixels, errors = run([encode(gray)], channels=3, mean=mean, std=std)
    assert errors == {}
    assert pixels.shape == (1, 3, 8, 8)
    for c in range(3):
        np.testing.assert_allclose(pixels[0, c], (gray / 255.0 - mean[c]) / std[c], atol=1e-6)


def test_rgba_drops_alpha_for_rgb() -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 10
    pixels, _ = run([encode(rgba)], channels=3)
    np.testing.assert_allclose(pixels[0, 0], 200 / 255.0, atol=1e-7)
    np.testing.assert_allclose(pixels[0, 1:], 0.0)


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    wide = np.linspace(0, 65535, 64).astype(np.uint16).reshape(8, 8)
    blob = encode(wide)
    assert Image.open(io.BytesIO(blob)).mode == "I;16"
    pixels, errors = run([blob])
    assert errors == {}
    np.testing.assert_allclose(pixels[0, 0], (wide >> 8) / 255.0, atol=1e-7)


def test_resize_is_bilinear_and_only_when_needed(gray: np.ndarray) -> None:
    big = np.kron(gray, np.ones((3, 3), dtype=np.uint8))  # 24x24
    pixels, errors = run([encode(big), encode(gray)])
    expected = np.asarray(Image.fromarray(big).resize((8, 8), Image.Resampling.BILINEAR),
                          dtype=np.float32) / 255.0
    assert errors == {}
    np.testing.assert_allclose(pixels[0, 0], expected, atol=1e-7)
    np.testing.assert_allclose(pixels[1, 0], gray / 255.0, atol=1e-7)  # untouched


def test_non_square_target(gray: np.ndarray) -> None:
    pixels, errors = run([encode(gray)], height=4, width=6)
    assert errors == {}
    assert pixels.shape == (1, 1, 4, 6)


def test_bad_rows_are_reported_and_zero_filled_while_others_succeed(gray: np.ndarray) -> None:
    good = encode(gray)
    rows = [
        good,
        b"",  # empty
        good[: len(good) // 2],  # truncated inside the image data
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,  # corrupt after the signature
        png_header_only(100_000, 100_000),  # a decompression bomb's header
        encode(gray, "GIF"),
        encode(gray, "BMP"),
        b"definitely not an image",
        "a str, not bytes",
        good,
    ]
    pixels, errors = run(rows)
    assert sorted(errors) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert "empty" in errors[1]
    assert "truncated" in errors[2]
    assert "corrupt" in errors[3]
    assert "above the limit" in errors[4]
    assert "GIF" in errors[5] and "unsupported" in errors[5]
    assert "BMP" in errors[6]
    assert "unrecognized" in errors[7]
    assert "str" in errors[8]
    for row in errors:
        assert not pixels[row].any()
    np.testing.assert_allclose(pixels[0, 0], gray / 255.0, atol=1e-7)
    np.testing.assert_allclose(pixels[9, 0], gray / 255.0, atol=1e-7)


def test_bomb_header_is_refused_before_decoding() -> None:
    start = time.perf_counter()
    with pytest.raises(InvalidImageError, match="above the limit of 64"):
        decode_image(png_header_only(9, 8), max_pixels=64)
    with pytest.raises(InvalidImageError, match="above the limit"):
        decode_image(png_header_only(60_000, 60_000))
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(("width", "height"), [(0, 16), (16, 0), (0, 0)])
def test_a_zero_sized_png_is_named_as_such(width: int, height: int) -> None:
    """PIL refuses to open it; the error says the header declares no pixels, not 'corrupt'."""
    with pytest.raises(InvalidImageError,
                       match=f"PNG image has empty dimensions {width}x{height}"):
        decode_image(png_header_only(width, height))


def test_pil_decompression_bomb_error_is_translated() -> None:
    # Above PIL's own hard limit (2 * MAX_IMAGE_PIXELS) even when our limit is generous.
    with pytest.raises(InvalidImageError, match="decompression bomb"):
        decode_image(png_header_only(20_000, 20_000), max_pixels=10**12)


@pytest.mark.parametrize(("blob", "needle"), [
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WEBP"),
    (b"\x00\x00\x00\x1cftypheic\x00\x00", "HEIF"),
    (b"II*\x00\x08\x00\x00\x00", "TIFF"),
])
def test_unsupported_formats_are_named(blob: bytes, needle: str) -> None:
    with pytest.raises(InvalidImageError, match=needle):
        decode_image(blob)


def test_invalid_image_error_is_a_step_input_error() -> None:
    assert issubclass(InvalidImageError, StepInputError)


@pytest.mark.parametrize("overrides", [
    {"channels": 2}, {"std": 0.0}, {"mean": (0.1, 0.2)}, {"height": 0},
    {"mean": float("nan")},
])
def test_bad_parameters_are_refused(gray: np.ndarray, overrides: dict) -> None:
    with pytest.raises(StepInputError):
        run([encode(gray)], **overrides)


def test_normalization_constants_are_cached_and_read_only() -> None:
    a = normalization(3, (0.5,), (0.25,))
    assert normalization(3, (0.5,), (0.25,)) is a
    assert not a.scale.flags.writeable
    np.testing.assert_allclose(a.scale.ravel(), [1 / (255 * 0.25)] * 3, rtol=1e-6)
    np.testing.assert_allclose(a.offset.ravel(), [2.0] * 3)


def test_empty_batch() -> None:
    pixels, errors = run([])
    assert pixels.shape == (0, 1, 8, 8)
    assert errors == {}
