"""Pipeline step functions named in models.yaml (`processing.steps:<name>`).

Each takes the whole batch (`inputs`, rows of every request concatenated) and a StepContext,
and returns a StepResult; rows it cannot process are reported, not raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from processing import classification, images
from processing.step_api import StepContext, StepInputError, StepResult

IMAGE = "IMAGE"
PIXELS = "PIXELS"
LOGITS = "LOGITS"
LABELS = "LABELS"
SCORES = "SCORES"
CLASS_INDICES = "CLASS_INDICES"


def require_input(inputs: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """The named input as an array, or StepInputError naming it and what was given."""
    if name not in inputs:
        given = ", ".join(sorted(inputs)) or "none"
        raise StepInputError(f"missing input {name!r} (given: {given})")
    return np.asarray(inputs[name])


def _require_parameter(parameters: Mapping[str, str], key: str) -> str:
    if key not in parameters:
        raise StepInputError(f"missing parameter {key!r}")
    return parameters[key]


def _parse_int(parameters: Mapping[str, str], key: str, default: int | None = None) -> int:
    raw = parameters.get(key)
    if raw is None:
        if default is None:
            raise StepInputError(f"missing parameter {key!r}")
        return default
    try:
        return int(str(raw).strip())
    except ValueError as e:
        raise StepInputError(f"parameter {key!r} must be an integer, got {raw!r}") from e


def _parse_floats(parameters: Mapping[str, str], key: str) -> tuple[float, ...]:
    raw = _require_parameter(parameters, key)
    try:
        values = tuple(float(v) for v in str(raw).replace(" ", "").strip("[]").split(","))
    except ValueError as e:
        raise StepInputError(
            f"parameter {key!r} must be a number or comma-separated numbers, got {raw!r}") from e
    return values


@dataclass(frozen=True, kw_only=True)
class ImageSettings:
    height: int
    width: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    max_pixels: int


@lru_cache(maxsize=32)
def _image_settings(parameters: tuple[tuple[str, str], ...]) -> ImageSettings:
    params = dict(parameters)
    settings = ImageSettings(
        height=_parse_int(params, "height"),
        width=_parse_int(params, "width"),
        channels=_parse_int(params, "channels"),
        mean=_parse_floats(params, "mean"),
        std=_parse_floats(params, "std"),
        max_pixels=_parse_int(params, "max_pixels", images.DEFAULT_MAX_PIXELS),
    )
    images.normalization(settings.channels, settings.mean, settings.std)  # validate once
    if settings.height <= 0 or settings.width <= 0 or settings.max_pixels <= 0:
        raise StepInputError(f"height, width and max_pixels must be positive: {settings}")
    return settings


def image_settings(context: StepContext) -> ImageSettings:
    """Parsed, validated image parameters of a step (cached per parameter set)."""
    return _image_settings(tuple(sorted((k, str(v)) for k, v in context.parameters.items())))


def _image_rows(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise StepInputError(
            f"input {IMAGE!r} must have shape [batch, 1] (one encoded image per row), "
            f"got {list(array.shape)}")
    if array.dtype != np.object_ and array.dtype.kind != "S":
        raise StepInputError(f"input {IMAGE!r} must be BYTES, got dtype {array.dtype}")
    return array


def preprocess_images(inputs: Mapping[str, np.ndarray], context: StepContext) -> StepResult:
    """IMAGE (BYTES [B, 1]) -> PIXELS (float32 [B, C, H, W]), bad images as row errors."""
    settings = image_settings(context)
    rows = _image_rows(require_input(inputs, IMAGE))
    pixels, errors = images.preprocess_images(
        list(rows),
        height=settings.height, width=settings.width, channels=settings.channels,
        mean=settings.mean, std=settings.std, max_pixels=settings.max_pixels,
    )
    return StepResult(outputs={PIXELS: pixels}, errors=errors)


def classify_top_k(inputs: Mapping[str, np.ndarray], context: StepContext) -> StepResult:
    """LOGITS (float [B, classes]) -> LABELS (bytes), SCORES (softmax), CLASS_INDICES; [B, k].

    Rows holding NaN or Inf are row errors (their outputs are filler).
    """
    logits = require_input(inputs, LOGITS)
    if logits.ndim != 2:
        raise StepInputError(f"input {LOGITS!r} must have shape [batch, classes], "
                             f"got {list(logits.shape)}")
    if logits.dtype.kind != "f":
        raise StepInputError(f"input {LOGITS!r} must be floating point, got {logits.dtype}")
    k = _parse_int(context.parameters, "top_k", 1)
    finite = np.isfinite(logits).all(axis=1)
    errors: dict[int, str] = {}
    if not finite.all():
        bad = np.flatnonzero(~finite)
        errors = {int(row): "logits contain NaN or Inf" for row in bad}
        logits = np.where(finite[:, None], logits, 0)
    indices, scores = classification.top_k(classification.softmax(logits), k)
    labels = classification.lookup_labels(indices, context.labels, logits.shape[1])
    return StepResult(
        outputs={LABELS: labels, SCORES: scores, CLASS_INDICES: indices},
        errors=errors,
    )
