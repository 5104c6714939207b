"""Decode encoded images (PNG, JPEG) and turn a batch of them into normalized NCHW float32.

Safety first: the format is sniffed from the magic bytes and only PNG and JPEG reach a PIL
decoder; the header's dimensions are checked against `max_pixels` before any pixel is
decoded, so a decompression bomb costs a header read, not gigabytes of memory.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tritonkit.processing.step_api import StepInputError

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 4096 * 4096


class InvalidImageError(StepInputError):
    """An image that cannot be used: empty, truncated, corrupt, unsupported or too large."""


class ImageFormat(str, Enum):
    PNG = "PNG"
    JPEG = "JPEG"


_SUPPORTED_MAGIC: tuple[tuple[bytes, ImageFormat], ...] = (
    (b"\x89PNG\r\n\x1a\n", ImageFormat.PNG),
    (b"\xff\xd8\xff", ImageFormat.JPEG),
)
# Only to name what was sent in the error message; none of these reaches a decoder.
_KNOWN_UNSUPPORTED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"P1", "PBM"), (b"P2", "PGM"), (b"P3", "PPM"), (b"P4", "PBM"), (b"P5", "PGM"), (b"P6", "PPM"),
)
_PIL_MODES = {1: "L", 3: "RGB"}
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I"})


def sniff_format(blob: bytes) -> ImageFormat:
    """The format of an encoded image from its magic bytes; anything but PNG/JPEG is refused."""
    for magic, fmt in _SUPPORTED_MAGIC:
        if blob.startswith(magic):
            return fmt
    supported = ", ".join(f.value for f in ImageFormat)
    if blob[4:8] == b"ftyp":
        brand = blob[8:12].decode("ascii", errors="replace").strip()
        name = "HEIF/AVIF" if brand in {"heic", "heix", "mif1", "avif", "avis"} else "ISO-BMFF"
        raise InvalidImageError(f"unsupported image format {name} (supported: {supported})")
    if blob.startswith(b"RIFF") and blob[8:12] == b"WEBP":
        raise InvalidImageError(f"unsupported image format WEBP (supported: {supported})")
    for magic, name in _KNOWN_UNSUPPORTED_MAGIC:
        if blob.startswith(magic):
            raise InvalidImageError(f"unsupported image format {name} (supported: {supported})")
    raise InvalidImageError(
        f"unrecognized image data (first bytes {blob[:8].hex()}; supported: {supported})")


def _png_declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk (the first chunk), or None without one."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def decode_image(blob: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode one PNG or JPEG fully; raise InvalidImageError naming what is wrong with it.
    `max_size` (height, width) bounds each side; like `max_pixels`, it is checked on the
    header's size, before any pixel is decoded."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise InvalidImageError(f"expected encoded image bytes, got {type(blob).__name__}")
    data = bytes(blob)
    if not data:
        raise InvalidImageError("image is empty (0 bytes)")
    fmt = sniff_format(data)
    declared = _png_declared_size(data) if fmt is ImageFormat.PNG else None
    if declared is not None and 0 in declared:  # PIL refuses these as corrupt
        raise InvalidImageError(f"PNG image has empty dimensions {declared[0]}x{declared[1]}")
    try:
        image = Image.open(io.BytesIO(data), formats=(fmt.value,))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # PIL's own guard fired while reading the header (nothing was decoded).
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
        raise InvalidImageError(f"{fmt.value} image is above the limit of {limit} pixels, "
                                f"refused as a decompression bomb: {e}") from e
    except UnidentifiedImageError as e:  # PIL's text names a BytesIO object's address
        raise InvalidImageError(f"{fmt.value} header is truncated or corrupt") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InvalidImageError(f"{fmt.value} header is truncated or corrupt: {e}") from e
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImageError(f"{fmt.value} image has empty dimensions {width}x{height}")
    if max_size is not None and (height > max_size[0] or width > max_size[1]):
        raise InvalidImageError(
            f"image is {height}x{width} (height x width), above this model's bound of "
            f"{max_size[0]}x{max_size[1]}")
    if width * height > max_pixels:
        raise InvalidImageError(
            f"{fmt.value} image is {width}x{height} = {width * height} pixels, "
            f"above the limit of {max_pixels}")
    try:
        image.load()
    except Image.DecompressionBombError as e:
        raise InvalidImageError(f"{fmt.value} image refused as a decompression bomb: {e}") from e
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        raise InvalidImageError(f"{fmt.value} image is truncated or corrupt: {e}") from e
    if fmt is ImageFormat.JPEG:
        try:
            return ImageOps.exif_transpose(image)
        except (OSError, SyntaxError, ValueError, KeyError, TypeError) as e:
            log.debug("ignoring unusable EXIF orientation: %s", e)
    return image


def to_mode(image: Image.Image, channels: int) -> Image.Image:
    """Grayscale (channels=1) or RGB (channels=3); alpha is dropped, 16-bit is scaled to 8."""
    mode = _PIL_MODES[channels]
    if image.mode == mode:
        return image
    if image.mode in _SIXTEEN_BIT_MODES:  # 16-bit PNG: scale, don't clip, to 8 bits
        wide = np.asarray(image, dtype=np.uint32)
        image = Image.fromarray((np.minimum(wide, 0xFFFF) >> 8).astype(np.uint8), mode="L")
    return image.convert(mode)


@dataclass(frozen=True, kw_only=True)
class Normalization:
    """`(x / 255 - mean) / std` per channel, precomputed as `x * scale - offset` (float32)."""

    scale: np.ndarray  # [C, 1, 1]
    offset: np.ndarray  # [C, 1, 1]


@lru_cache(maxsize=64)
def normalization(
    channels: int, mean: tuple[float, ...], std: tuple[float, ...],
) -> Normalization:
    """Validated, broadcast-ready constants; cached so a step call rebuilds nothing."""
    if channels not in _PIL_MODES:
        raise StepInputError(f"channels must be 1 or 3, got {channels}")
    means = _per_channel("mean", mean, channels)
    stds = _per_channel("std", std, channels)
    if np.any(stds == 0) or not np.all(np.isfinite(stds)) or not np.all(np.isfinite(means)):
        raise StepInputError(f"std must be finite and non-zero and mean finite, got "
                             f"mean={list(mean)} std={list(std)}")
    scale = (1.0 / (255.0 * stds)).astype(np.float32).reshape(channels, 1, 1)
    offset = (means / stds).astype(np.float32).reshape(channels, 1, 1)
    scale.setflags(write=False)
    offset.setflags(write=False)
    return Normalization(scale=scale, offset=offset)


def _per_channel(name: str, values: tuple[float, ...], channels: int) -> np.ndarray:
    if len(values) == 1:
        return np.full(channels, values[0], dtype=np.float64)
    if len(values) != channels:
        raise StepInputError(
            f"{name} needs 1 or {channels} values for {channels} channel(s), got {len(values)}")
    return np.asarray(values, dtype=np.float64)


def _as_tuple(value: float | Sequence[float]) -> tuple[float, ...]:
    if isinstance(value, int | float):
        return (float(value),)
    return tuple(float(v) for v in value)


def preprocess_images(
    blobs: Sequence[bytes],
    *,
    height: int,
    width: int,
    channels: int,
    mean: float | Sequence[float],
    std: float | Sequence[float],
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, dict[int, str]]:
    """Encoded images -> float32 [B, C, H, W], `(x/255 - mean) / std`, and row errors.

    Each image is decoded, converted to grayscale or RGB, and resized (bilinear) to
    (height, width) only when its size differs. Rows that fail are zero-filled and reported
    as `{row: message}`. The float math runs once over the stacked uint8 batch.
    """
    if height <= 0 or width <= 0:
        raise StepInputError(f"height and width must be positive, got {height}x{width}")
    norm = normalization(channels, _as_tuple(mean), _as_tuple(std))
    batch = np.zeros((len(blobs), height, width, channels), dtype=np.uint8)
    errors: dict[int, str] = {}
    for row, blob in enumerate(blobs):
        try:
            image = to_mode(decode_image(blob, max_pixels=max_pixels), channels)
        except InvalidImageError as e:
            errors[row] = str(e)
            continue
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        batch[row] = np.asarray(image).reshape(height, width, channels)
    pixels = np.empty((len(blobs), channels, height, width), dtype=np.float32)
    np.multiply(batch.transpose(0, 3, 1, 2), norm.scale, out=pixels)
    pixels -= norm.offset
    if errors:
        pixels[list(errors)] = 0.0
    return pixels, errors
