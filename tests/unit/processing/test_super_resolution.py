"""tritonkit.processing.super_resolution and the upscale_decode / upscale_encode steps."""

from __future__ import annotations

import io
import math
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tritonkit.processing import steps
from tritonkit.processing import super_resolution as sr
from tritonkit.processing.step_api import (
    StepConfigError,
    StepContext,
    StepInputError,
    prepare_step,
)

BOUND = StepContext(parameters={"max_height": "64", "max_width": "48"})


def rgb_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus a little noise: every channel varies."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    planes = [x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1),
              (x + y) * 127 / max(height + width - 2, 1)]
    image = np.stack(planes, axis=-1) + rng.normal(0, 8, (height, width, 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(buffer, format=fmt)
    return buffer.getvalue()


def batch(*blobs: object) -> np.ndarray:
    arr = np.empty((len(blobs), 1), dtype=np.object_)
    arr[:, 0] = blobs
    return arr


def zero_width_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", 0, 4, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 4)) + chunk(b"IEND", b""))


# --- pure functions -----------------------------------------------------------------------


def test_decode_then_merge_without_upscaling_reproduces_the_image() -> None:
    rgb = rgb_image(20, 30)
    luma, chroma, errors = sr.decode_ycbcr([encode(rgb)], max_height=64, max_width=64)
    assert errors == {}
    assert luma.shape == (1, 1, 20, 30) and chroma.shape == (1, 2, 20, 30)
    assert luma.dtype == chroma.dtype == np.float32
    assert 0.0 <= luma.min() and luma.max() <= 1.0 and 0.0 <= chroma.min() <= chroma.max() <= 1.0
    merged = sr.merge_ycbcr(luma[0], chroma[0])
    assert merged.shape == rgb.shape and merged.dtype == np.uint8
    # RGB -> YCbCr -> RGB in 8 bits: rounding only
    assert np.abs(merged.astype(int) - rgb.astype(int)).max() <= 3
    assert np.abs(sr.luma(merged).astype(int) - sr.luma(rgb).astype(int)).max() <= 1


def test_luma_matches_pil_and_gray_images_carry_neutral_chroma() -> None:
    gray = rgb_image(8, 8)[..., 0]
    luma, chroma, _ = sr.decode_ycbcr([encode(gray)], max_height=8, max_width=8)
    np.testing.assert_allclose(luma[0, 0] * 255, gray, atol=1.001)  # PIL's fixed-point YCbCr
    np.testing.assert_allclose(chroma * 255, 128, atol=1e-3)


def test_merge_upscales_the_chroma_bicubic_to_the_luma_size() -> None:
    rgb = rgb_image(10, 12)
    low = sr.downscale(rgb)
    _, chroma, _ = sr.decode_ycbcr([encode(low)], max_height=10, max_width=12)
    y_full = sr.ycbcr(rgb)[..., 0].astype(np.float32)[None] / 255
    merged = sr.merge_ycbcr(y_full, chroma[0])
    assert merged.shape == (10, 12, 3)
    assert np.abs(sr.luma(merged).astype(int) - sr.luma(rgb).astype(int)).max() <= 2


def test_psnr_of_known_values() -> None:
    a = np.zeros((1, 1, 8, 8))
    b = np.full((1, 1, 8, 8), 0.1)
    assert sr.psnr_rows(a, b, crop=0)[0] == pytest.approx(20.0)  # mse 0.01
    assert sr.psnr(a[0, 0], a[0, 0], crop=2) == sr.MAX_PSNR_DB
    c = b.copy()
    c[..., :2, :] = 1.0  # only the cropped border differs from b
    assert sr.psnr_rows(c, b, crop=2)[0] == sr.MAX_PSNR_DB
    assert sr.psnr_rows(c, b, crop=0)[0] < 20.0
    x = np.zeros((16, 16), dtype=np.uint8)
    assert sr.psnr(x, x + 5, peak=255.0) == pytest.approx(20 * math.log10(255 / 5))
    rgb = rgb_image(16, 16)
    noisy = rgb.copy()
    noisy[8, 8] = rgb[8, 8] ^ 0x10
    assert 40.0 < sr.psnr_y(rgb, noisy) < sr.MAX_PSNR_DB
    with pytest.raises(ValueError, match="crop"):
        sr.psnr_rows(a, b, crop=4)


def test_bicubic_baseline_and_downscale_sizes() -> None:
    rgb = sr.crop_to_multiple(rgb_image(21, 33))
    assert rgb.shape == (20, 32, 3)
    low = sr.downscale(rgb)
    assert low.shape == (10, 16, 3)
    assert sr.bicubic_upscale(low).shape == (20, 32, 3)
    assert sr.bicubic_upscale(low, size=(21, 33)).shape == (21, 33, 3)
    assert sr.psnr_y(sr.bicubic_upscale(low), rgb) > 20.0


def test_png_bytes_are_deterministic() -> None:
    luma = np.random.default_rng(1).random((2, 1, 12, 16), dtype=np.float32)
    chroma = np.random.default_rng(2).random((2, 2, 6, 8), dtype=np.float32)
    chroma[1] = 0.5  # neutral: the RGB pixels are gray, equal to the luma
    first, sizes, errors = sr.encode_upscaled(luma, chroma)
    second, _, _ = sr.encode_upscaled(luma.copy(), chroma.copy())
    assert errors == {} and first.shape == (2, 1) and first.dtype == np.object_
    assert list(first[:, 0]) == list(second[:, 0])
    assert sizes.dtype == np.int32 and sizes.tolist() == [[12, 16], [12, 16]]
    decoded = np.asarray(Image.open(io.BytesIO(first[0, 0])))
    assert decoded.shape == (12, 16, 3)
    gray = np.asarray(Image.open(io.BytesIO(first[1, 0])))
    np.testing.assert_array_equal(gray[..., 0], np.rint(luma[1, 0] * 255).astype(np.uint8))
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])


# --- steps ---------------------------------------------------------------------------------


def test_upscale_decode_step_shapes_and_modes() -> None:
    rgb = rgb_image(16, 24)
    rows = batch(encode(rgb), encode(rgb, mode="L"), encode(rgb, mode="RGBA"),
                 encode(rgb, fmt="JPEG"))
    result = steps.upscale_decode({"IMAGE": rows}, BOUND)
    assert result.errors == {}
    luma, chroma = result.outputs["LUMA"], result.outputs["CHROMA"]
    assert luma.shape == (4, 1, 16, 24) and chroma.shape == (4, 2, 16, 24)
    np.testing.assert_array_equal(luma[2], luma[0])  # alpha dropped
    np.testing.assert_allclose(chroma[1], 128 / 255, atol=1e-6)  # grayscale: neutral chroma


@pytest.mark.parametrize(("blob", "needle"), [
    (b"", "empty"),
    (b"not an image at all", "unrecognized"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "corrupt"),
    (zero_width_png(), "PNG"),
    (encode(rgb_image(65, 10)), "65x10 (height x width), above this model's bound of 64x48"),
    (encode(rgb_image(10, 49)), "10x49"),
])
def test_upscale_decode_bad_rows_fail_alone(blob: bytes, needle: str) -> None:
    good = encode(rgb_image(8, 8))
    result = steps.upscale_decode({"IMAGE": batch(good, blob, good)}, BOUND)
    assert list(result.errors) == [1]
    assert needle in result.errors[1]
    assert result.outputs["LUMA"].shape == (3, 1, 8, 8)
    assert not result.outputs["LUMA"][1].any() and result.outputs["LUMA"][0].any()


def test_upscale_decode_all_rows_bad_gives_filler() -> None:
    result = steps.upscale_decode({"IMAGE": batch(b"", b"x")}, BOUND)
    assert sorted(result.errors) == [0, 1]
    assert result.outputs["LUMA"].shape == (2, 1, 1, 1)
    assert result.outputs["CHROMA"].shape == (2, 2, 1, 1)


def test_upscale_decode_refuses_mixed_sizes_in_one_batch() -> None:
    rows = batch(b"", encode(rgb_image(8, 8)), encode(rgb_image(8, 10)))
    with pytest.raises(sr.MixedSizesError, match=r"different sizes cannot share a batch.*"
                                                 r"row 2 is 8x10.*separate requests"):
        steps.upscale_decode({"IMAGE": rows}, BOUND)
    assert issubclass(sr.MixedSizesError, StepInputError)


def test_mixed_sizes_from_separate_requests_succeed_through_the_batcher() -> None:
    from tritonkit.runtime.batching import RequestError, run_batched

    small, wide = encode(rgb_image(8, 8)), encode(rgb_image(8, 10))
    outcomes = run_batched(lambda inputs: steps.upscale_decode(inputs, BOUND),
                           [{"IMAGE": batch(small)}, {"IMAGE": batch(wide)},
                            {"IMAGE": batch(small, wide)}])
    assert not isinstance(outcomes[0], RequestError)
    assert not isinstance(outcomes[1], RequestError)
    assert outcomes[1]["LUMA"].shape == (1, 1, 8, 10)
    assert isinstance(outcomes[2], RequestError)
    assert "separate requests" in outcomes[2].message


@pytest.mark.parametrize("parameters", [{}, {"max_height": "64"},
                                        {"max_height": "0", "max_width": "8"},
                                        {"max_height": "x", "max_width": "8"}])
def test_upscale_decode_bound_is_required_at_load(parameters: dict[str, str]) -> None:
    with pytest.raises(StepConfigError, match="max_"):
        prepare_step(steps.upscale_decode, StepContext(parameters=parameters))


def test_upscale_round_trip_through_both_steps() -> None:
    rgb = rgb_image(12, 16)
    decoded = steps.upscale_decode({"IMAGE": batch(encode(rgb))}, BOUND)
    luma = decoded.outputs["LUMA"]
    upscaled = luma.repeat(2, axis=2).repeat(2, axis=3)  # a nearest-neighbour "network"
    result = steps.upscale_encode({"UPSCALED": upscaled, "CHROMA": decoded.outputs["CHROMA"]},
                                  StepContext())
    assert result.errors == {}
    assert result.outputs["SIZE"].tolist() == [[24, 32]]
    image = Image.open(io.BytesIO(result.outputs["PNG"][0, 0]))
    assert image.format == "PNG" and image.mode == "RGB" and image.size == (32, 24)
    back = sr.downscale(np.asarray(image))
    assert sr.psnr_y(back, rgb, crop=1) > 30.0


def test_upscale_encode_non_finite_row_fails_alone() -> None:
    upscaled = np.full((2, 1, 4, 4), 0.5, dtype=np.float32)
    upscaled[1, 0, 0, 0] = np.nan
    result = steps.upscale_encode({"UPSCALED": upscaled,
                                   "CHROMA": np.full((2, 2, 2, 2), 0.5, dtype=np.float32)},
                                  StepContext())
    assert list(result.errors) == [1] and "NaN" in result.errors[1]
    assert result.outputs["PNG"][0, 0].startswith(b"\x89PNG")


@pytest.mark.parametrize(("upscaled", "chroma", "needle"), [
    (np.zeros((1, 3, 4, 4), np.float32), np.zeros((1, 2, 2, 2), np.float32), "upscaled"),
    (np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 3, 2, 2), np.float32), "chroma"),
    (np.zeros((2, 1, 4, 4), np.float32), np.zeros((1, 2, 2, 2), np.float32), "rows"),
    (np.zeros((1, 1, 4, 4), np.int32), np.zeros((1, 2, 2, 2), np.float32), "float"),
    (np.zeros((1, 1, 4, 0), np.float32), np.zeros((1, 2, 4, 4), np.float32),
     r"empty shape \[1, 1, 4, 0\]"),
    (np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 2, 0, 2), np.float32),
     r"empty shape \[1, 2, 0, 2\]"),
])
def test_upscale_encode_rejects_bad_tensors(upscaled: np.ndarray, chroma: np.ndarray,
                                            needle: str) -> None:
    with pytest.raises(StepInputError, match=needle):
        steps.upscale_encode({"UPSCALED": upscaled, "CHROMA": chroma}, StepContext())
