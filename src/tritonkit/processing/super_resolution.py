"""Image math of the x2 super-resolution pipeline: YCbCr split and merge, PNG encoding, the
bicubic baseline and PSNR on the luma. Plain numpy/PIL, no Triton import.

The network sees only the luma (Y of PIL's full-range JPEG YCbCr, in [0, 1]); the chroma
(Cb, Cr, in [0, 1]) is upscaled with PIL bicubic and merged back. PSNR is measured on Y with
`BORDER` pixels cropped from each side (the usual `scale` crop), capped at `MAX_PSNR_DB` so
identical images give a finite figure.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from tritonkit.processing import images
from tritonkit.processing.images import InvalidImageError
from tritonkit.processing.step_api import StepInputError

SCALE = 2
BORDER = 2  # pixels cropped from each side before PSNR (= SCALE, the usual convention)
MAX_PSNR_DB = 100.0
PNG_COMPRESS_LEVEL = 6
_BICUBIC = Image.Resampling.BICUBIC


class MixedSizesError(StepInputError):
    """Images of different sizes in one batch: they cannot be stacked into one tensor."""


# --- colour space -------------------------------------------------------------------------


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB; grayscale is replicated, alpha dropped, 16-bit scaled to 8 bits."""
    return images.to_mode(image, 3)


def ycbcr(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> uint8 YCbCr [H, W, 3] (PIL's conversion)."""
    return np.asarray(Image.fromarray(_rgb_array(rgb), mode="RGB").convert("YCbCr"))


def luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> uint8 Y [H, W]."""
    return ycbcr(rgb)[..., 0]


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> uint8 0..255 (clipped, rounded half to even); NaN -> 0."""
    scaled = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0) * np.float32(255.0)
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def merge_ycbcr(luma_plane: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """Y float [1, H, W] + CbCr float [2, h, w] (both in [0, 1]) -> uint8 RGB [H, W, 3].

    The chroma planes are resized to H x W with PIL bicubic (nothing happens when the sizes
    match), Y is rounded to uint8, and PIL converts YCbCr to RGB.
    """
    y = np.asarray(luma_plane)
    c = np.asarray(chroma)
    if y.ndim != 3 or y.shape[0] != 1 or c.ndim != 3 or c.shape[0] != 2:
        raise StepInputError(f"expected luma [1, H, W] and chroma [2, h, w], got "
                             f"{list(y.shape)} and {list(c.shape)}")
    height, width = y.shape[1:]
    if min(height, width, *c.shape[1:]) < 1:
        raise StepInputError(f"empty shape: luma {list(y.shape)}, chroma {list(c.shape)}: an "
                             "image needs at least one pixel")
    planes = [Image.fromarray(_to_uint8(y[0]), mode="L")]
    for plane in _to_uint8(c):
        image = Image.fromarray(plane, mode="L")
        planes.append(image if image.size == (width, height)
                      else image.resize((width, height), _BICUBIC))
    return np.asarray(Image.merge("YCbCr", planes).convert("RGB"))


# --- encoded images -----------------------------------------------------------------------


def encode_png(rgb: np.ndarray) -> bytes:
    """uint8 RGB [H, W, 3] (or gray [H, W]) -> PNG bytes; no metadata, fixed compression, so
    the same pixels always give the same bytes."""
    array = np.ascontiguousarray(rgb, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array, mode="RGB" if array.ndim == 3 else "L").save(
        buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def decode_ycbcr(
    blobs: Sequence[bytes], *, max_height: int, max_width: int,
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Encoded images -> (Y float32 [B, 1, H, W], CbCr float32 [B, 2, H, W], row errors).

    Each image is decoded (bounded by max_height x max_width), converted to RGB, then to
    PIL YCbCr, scaled to [0, 1]. Failed rows are zero-filled and reported as {row: message};
    when every row fails, the planes are 1x1. Raises MixedSizesError (a StepInputError) when
    the decodable images do not all share one size: they cannot be stacked, and the Triton
    adapter then runs each request alone.
    """
    if max_height <= 0 or max_width <= 0:
        raise StepInputError(f"max_height and max_width must be positive, got "
                             f"{max_height}x{max_width}")
    errors: dict[int, str] = {}
    decoded: dict[int, np.ndarray] = {}
    for row, blob in enumerate(blobs):
        try:
            image = to_rgb(images.decode_image(blob, max_pixels=max_height * max_width,
                                               max_size=(max_height, max_width)))
        except InvalidImageError as e:
            errors[row] = str(e)
            continue
        decoded[row] = np.asarray(image.convert("YCbCr"))
    sizes = {row: array.shape[:2] for row, array in decoded.items()}
    first = next(iter(sizes.values()), (1, 1))
    mixed = [row for row, size in sizes.items() if size != first]
    if mixed:
        shown = ", ".join(f"row {row} is {sizes[row][0]}x{sizes[row][1]}" for row in mixed[:4])
        raise MixedSizesError(
            f"images of different sizes cannot share a batch: the first image is "
            f"{first[0]}x{first[1]} (height x width), {shown}; send them as separate requests")
    stacked = np.zeros((len(blobs), first[0], first[1], 3), dtype=np.uint8)
    for row, array in decoded.items():
        stacked[row] = array
    planes = stacked.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1.0 / 255.0)
    return np.ascontiguousarray(planes[:, :1]), np.ascontiguousarray(planes[:, 1:]), errors


def encode_upscaled(
    upscaled: np.ndarray, chroma: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Network luma float [B, 1, H, W] + CbCr float [B, 2, h, w] -> PNG bytes (object [B, 1]),
    sizes int32 [B, 2] (height, width), row errors (rows with NaN/Inf in the luma)."""
    y = np.asarray(upscaled)
    c = np.asarray(chroma)
    if y.ndim != 4 or y.shape[1] != 1 or y.dtype.kind != "f":
        raise StepInputError(f"upscaled luma must be float [batch, 1, H, W], got "
                             f"{y.dtype}{list(y.shape)}")
    if c.ndim != 4 or c.shape[1] != 2 or c.dtype.kind != "f":
        raise StepInputError(f"chroma must be float [batch, 2, h, w], got "
                             f"{c.dtype}{list(c.shape)}")
    if y.shape[0] != c.shape[0]:
        raise StepInputError(f"upscaled luma has {y.shape[0]} rows, chroma {c.shape[0]}")
    for name, planes in (("upscaled luma", y), ("chroma", c)):
        if min(planes.shape[2:]) < 1:
            raise StepInputError(f"{name} has an empty shape {list(planes.shape)}: an image "
                                 "needs at least one pixel")
    finite = np.isfinite(y.reshape(len(y), -1)).all(axis=1) & \
        np.isfinite(c.reshape(len(c), -1)).all(axis=1)
    errors = {int(row): "the upscaled image contains NaN or Inf"
              for row in np.flatnonzero(~finite)}
    encoded = np.empty((len(y), 1), dtype=np.object_)
    for row in range(len(y)):
        encoded[row, 0] = b"" if row in errors else encode_png(merge_ycbcr(y[row], c[row]))
    sizes = np.tile(np.array(y.shape[2:], dtype=np.int32), (len(y), 1))
    return encoded, sizes, errors


# --- baseline and metrics -----------------------------------------------------------------


def _rgb_array(rgb: np.ndarray) -> np.ndarray:
    array = np.asarray(rgb)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {array.dtype}"
                         f"{list(array.shape)}")
    return np.ascontiguousarray(array)


def crop_to_multiple(rgb: np.ndarray, factor: int = SCALE) -> np.ndarray:
    """The top-left part of `rgb` whose height and width are multiples of `factor`."""
    array = _rgb_array(rgb)
    height, width = (array.shape[0] // factor) * factor, (array.shape[1] // factor) * factor
    if height < 1 or width < 1:
        raise ValueError(f"image {array.shape[0]}x{array.shape[1]} is smaller than {factor}")
    return array[:height, :width]


def downscale(rgb: np.ndarray, factor: int = SCALE) -> np.ndarray:
    """The low-resolution image: PIL bicubic (antialiased) to 1/factor of the size (floor)."""
    array = _rgb_array(rgb)
    size = (array.shape[1] // factor, array.shape[0] // factor)
    if min(size) < 1:
        raise ValueError(f"image {array.shape[0]}x{array.shape[1]} is too small to downscale "
                         f"by {factor}")
    return np.asarray(Image.fromarray(array, mode="RGB").resize(size, _BICUBIC))


def bicubic_upscale(rgb: np.ndarray, factor: int = SCALE,
                    size: tuple[int, int] | None = None) -> np.ndarray:
    """The baseline: PIL bicubic upscale of `rgb` by `factor`, or to `size` (height, width)."""
    array = _rgb_array(rgb)
    height, width = size if size is not None else (array.shape[0] * factor,
                                                    array.shape[1] * factor)
    return np.asarray(Image.fromarray(array, mode="RGB").resize((width, height), _BICUBIC))


def psnr_rows(a: np.ndarray, b: np.ndarray, *, peak: float = 1.0,
              crop: int = BORDER) -> np.ndarray:
    """PSNR in dB per row of two [N, ..., H, W] arrays, `crop` pixels off each side of H and W
    first; float64 [N]. Capped at MAX_PSNR_DB (identical rows give the cap, not inf)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim < 3:
        raise ValueError(f"PSNR needs two arrays of one shape [N, ..., H, W], got "
                         f"{list(x.shape)} and {list(y.shape)}")
    height, width = x.shape[-2:]
    if crop < 0 or height <= 2 * crop or width <= 2 * crop:
        raise ValueError(f"cannot crop {crop} pixels from each side of {height}x{width}")
    window = (..., slice(crop, height - crop), slice(crop, width - crop))
    diff = (x[window] - y[window]).reshape(len(x), -1)
    mse = np.mean(diff * diff, axis=1)
    floor = peak * peak * 10.0 ** (-MAX_PSNR_DB / 10.0)
    return np.asarray(10.0 * np.log10(peak * peak / np.maximum(mse, floor)), dtype=np.float64)


def psnr(a: np.ndarray, b: np.ndarray, *, peak: float = 1.0, crop: int = BORDER) -> float:
    """PSNR in dB of two [H, W] planes (see psnr_rows)."""
    return float(psnr_rows(np.asarray(a)[None, None], np.asarray(b)[None, None], peak=peak,
                           crop=crop)[0])


def psnr_y(a_rgb: np.ndarray, b_rgb: np.ndarray, crop: int = BORDER) -> float:
    """PSNR in dB on the uint8 luma (PIL YCbCr) of two uint8 RGB images of one size."""
    return psnr(luma(a_rgb), luma(b_rgb), peak=255.0, crop=crop)
