"""Pipeline step functions named in models.yaml (`tritonkit.processing.steps:<name>`).

Each takes the whole batch (`inputs`, rows of every request concatenated) and a StepContext,
and returns a StepResult; rows it cannot process are reported, not raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tritonkit.processing import classification, detection, images, text
from tritonkit.processing import super_resolution as sr
from tritonkit.processing.step_api import (
    StepConfigError,
    StepContext,
    StepInputError,
    StepResult,
    prepared_by,
)

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


@prepared_by(image_settings)  # bad height/width/mean/std fail the model load
def preprocess_images(inputs: Mapping[str, np.ndarray], context: StepContext) -> StepResult:
    """IMAGE (BYTES [B, 1]) -> PIXELS (float32 [B, C, H, W]), bad images as row errors."""
    settings = context.prepared(image_settings)
    rows = _image_rows(require_input(inputs, IMAGE))
    pixels, errors = images.preprocess_images(
        list(rows),
        height=settings.height, width=settings.width, channels=settings.channels,
        mean=settings.mean, std=settings.std, max_pixels=settings.max_pixels,
    )
    return StepResult(outputs={PIXELS: pixels}, errors=errors)


SIZES = "SIZES"


def byte_sizes(inputs: Mapping[str, np.ndarray], context: StepContext) -> StepResult:
    """IMAGE (BYTES [B, 1]) -> SIZES (INT64 [B, 1]): each element's length in bytes.

    The cheapest real step: served alone, it measures what one Python-backend hop costs.
    """
    rows = _image_rows(require_input(inputs, IMAGE))
    sizes = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    return StepResult(outputs={SIZES: sizes.reshape(-1, 1)})


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


# --- detection (YOLO output format) and text embeddings -----------------------------------

PREDICTIONS = "PREDICTIONS"
LETTERBOX = "LETTERBOX"
BOXES = "BOXES"
NUM_DETECTIONS = "NUM_DETECTIONS"
TEXT = "TEXT"
INPUT_IDS = "INPUT_IDS"
ATTENTION_MASK = "ATTENTION_MASK"
TOKEN_TYPE_IDS = "TOKEN_TYPE_IDS"
HIDDEN = "HIDDEN"
EMBEDDING = "EMBEDDING"
# Decode parameters a request may override (request parameters, else the step's config).
DETECTION_REQUEST_PARAMETERS = ("conf_threshold", "iou_threshold")


def _parse_float(parameters: Mapping[str, str], key: str, default: float) -> float:
    raw = parameters.get(key)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = float(str(raw).strip())
    except ValueError as e:
        raise StepInputError(f"parameter {key!r} must be a number, got {raw!r}") from e
    if not np.isfinite(value):
        raise StepInputError(f"parameter {key!r} must be finite, got {raw!r}")
    return value


def letterbox_images(inputs: Mapping[str, np.ndarray], context: StepContext) -> StepResult:
    """IMAGE (BYTES [B, 1]) -> PIXELS (float32 [B, 3, H, W] in [0, 1]) and LETTERBOX [B, 5].

    LETTERBOX rows are (scale, pad_x, pad_y, width, height): how the image was fitted, for
    the postprocess step to map boxes back. Bad images are row errors.
    """
    params = context.parameters
    rows = _image_rows(require_input(inputs, IMAGE))
    pixels, geometry, errors = detection.letterbox_images(
        list(rows), height=_parse_int(params, "height"), width=_parse_int(params, "width"),
        pad_value=_parse_int(params, "pad_value", detection.DEFAULT_PAD_VALUE),
        max_pixels=_parse_int(params, "max_pixels", images.DEFAULT_MAX_PIXELS))
    return StepResult(outputs={PIXELS: pixels, LETTERBOX: geometry}, errors=errors)


def detect_postprocess(inputs: Mapping[str, np.ndarray], context: StepContext) -> StepResult:
    """PREDICTIONS (YOLO [B, 4 + C, anchors]) + LETTERBOX [B, 5] -> detections, padded to K.

    Outputs: BOXES float32 [B, K, 4] (x1, y1, x2, y2 in original-image pixels), SCORES
    [B, K], CLASS_INDICES int32 [B, K] (-1 padding), LABELS bytes [B, K] (b"" padding) and
    NUM_DETECTIONS int32 [B, 1]. Parameters: conf_threshold, iou_threshold (a request may
    override both), max_detections (K). An image without objects gets NUM_DETECTIONS 0.
    """
    predictions = require_input(inputs, PREDICTIONS)
    letterbox = require_input(inputs, LETTERBOX)
    if predictions.dtype.kind != "f":
        raise StepInputError(f"input {PREDICTIONS!r} must be floating point, got "
                             f"{predictions.dtype}")
    params = context.parameters
    batch = detection.decode_detections(
        predictions, letterbox,
        conf_threshold=_parse_float(params, "conf_threshold", detection.DEFAULT_CONF_THRESHOLD),
        iou_threshold=_parse_float(params, "iou_threshold", detection.DEFAULT_IOU_THRESHOLD),
        max_detections=_parse_int(params, "max_detections", detection.DEFAULT_MAX_DETECTIONS))
    classes = batch.classes
    names = np.array([label.encode("utf-8") for label in context.labels] + [b""],
                     dtype=np.object_)
    if context.labels:
        lookup = np.where((classes >= 0) & (classes < len(context.labels)), classes, -1)
        labels = names[lookup]
    else:
        labels = np.where(classes >= 0, classes.astype(str), "").astype(np.bytes_).astype(
            np.object_)
    return StepResult(outputs={
        BOXES: batch.boxes, SCORES: batch.scores, CLASS_INDICES: classes, LABELS: labels,
        NUM_DETECTIONS: batch.counts.reshape(-1, 1)})


def _text_rows(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise StepInputError(f"input {TEXT!r} must have shape [batch, 1] (one text per row), "
                             f"got {list(array.shape)}")
    if array.dtype != np.object_ and array.dtype.kind not in "SU":
        raise StepInputError(f"input {TEXT!r} must be BYTES, got dtype {array.dtype}")
    return array


TOKENIZER_DIR = "tokenizer_dir"


def prepare_tokenizer(context: StepContext) -> object:
    """The step's tokenizer, loaded and checked (text.load_tokenizer) when the model loads.

    Parameters: tokenizer_dir (the model's tokenizer files; an asset, relative to the model
    directory) and max_length (longer texts are truncated; at most the model's maximum).
    """
    directory = context.asset_path(TOKENIZER_DIR)
    max_length = _parse_int(context.parameters, "max_length", text.DEFAULT_MAX_LENGTH)
    try:
        return text.load_tokenizer(directory, max_length)
    except text.TokenizerLoadError as e:
        raise text.TokenizerLoadError(
            f"parameter {TOKENIZER_DIR!r} ({context.parameters[TOKENIZER_DIR]!r}): {e}") from e


@prepared_by(prepare_tokenizer)
def tokenize_text(inputs: Mapping[str, np.ndarray], context: StepContext) -> StepResult:
    """TEXT (BYTES [B, 1], UTF-8) -> INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS (int64 [B, L]).

    The tokenizer comes from `prepare_tokenizer` (parameters tokenizer_dir and max_length).
    L is the longest row of the batch after truncation. Empty text encodes as [CLS] [SEP];
    non-UTF-8 is a row error.
    """
    tokenizer = context.prepared(prepare_tokenizer)
    texts, errors = text.decode_texts(list(_text_rows(require_input(inputs, TEXT))))
    encoded = text.encode(tokenizer, texts)
    return StepResult(outputs={INPUT_IDS: encoded.input_ids,
                               ATTENTION_MASK: encoded.attention_mask,
                               TOKEN_TYPE_IDS: encoded.token_type_ids}, errors=errors)


def mean_pool_embeddings(inputs: Mapping[str, np.ndarray], context: StepContext) -> StepResult:
    """HIDDEN (float [B, L, D]) + ATTENTION_MASK (int [B, L]) -> EMBEDDING float32 [B, D].

    Masked mean over tokens, then L2 normalisation (parameter normalize, default true).
    """
    hidden = require_input(inputs, HIDDEN)
    mask = require_input(inputs, ATTENTION_MASK)
    if hidden.dtype.kind != "f":
        raise StepInputError(f"input {HIDDEN!r} must be floating point, got {hidden.dtype}")
    normalize = str(context.parameters.get("normalize", "true")).lower() != "false"
    return StepResult(outputs={EMBEDDING: text.mean_pool(hidden, mask, normalize=normalize)})


# --- x2 super-resolution on the luma ------------------------------------------------------

LUMA = "LUMA"
CHROMA = "CHROMA"
UPSCALED = "UPSCALED"
SIZE = "SIZE"
PNG = "PNG"  # the upscaled image (the ensemble's input is IMAGE: one name per tensor)


@dataclass(frozen=True, kw_only=True)
class UpscaleBound:
    max_height: int
    max_width: int


def upscale_bound(context: StepContext) -> UpscaleBound:
    """The parameters max_height and max_width (both required, positive): the largest input
    image the pipeline accepts. Bad values fail the model load."""
    try:
        bound = UpscaleBound(max_height=_parse_int(context.parameters, "max_height"),
                             max_width=_parse_int(context.parameters, "max_width"))
    except StepInputError as e:
        raise StepConfigError(f"{e} (the upscale_decode step needs max_height and max_width, "
                              "the largest input image in pixels)") from e
    if bound.max_height <= 0 or bound.max_width <= 0:
        raise StepConfigError(f"max_height and max_width must be positive, got "
                              f"{bound.max_height}x{bound.max_width}")
    return bound


@prepared_by(upscale_bound)
def upscale_decode(inputs: Mapping[str, np.ndarray], context: StepContext) -> StepResult:
    """IMAGE (BYTES [B, 1], PNG/JPEG) -> LUMA float32 [B, 1, H, W] (Y in [0, 1]) and CHROMA
    float32 [B, 2, H, W] (Cb, Cr in [0, 1]) at the image's own size.

    Grayscale and RGBA images are converted to RGB first. Row errors: undecodable or empty
    bytes, empty images, images above max_height x max_width (parameters). Images of different
    sizes in one batch raise StepInputError (they cannot be stacked): the Triton adapter then
    runs each request alone, so only a request mixing sizes itself fails.
    """
    bound = context.prepared(upscale_bound)
    rows = _image_rows(require_input(inputs, IMAGE))
    luma, chroma, errors = sr.decode_ycbcr(list(rows), max_height=bound.max_height,
                                           max_width=bound.max_width)
    return StepResult(outputs={LUMA: luma, CHROMA: chroma}, errors=errors)


def upscale_encode(inputs: Mapping[str, np.ndarray], context: StepContext) -> StepResult:
    """UPSCALED float [B, 1, H, W] (the network's luma) + CHROMA float [B, 2, h, w] -> PNG
    (BYTES [B, 1], the RGB result) and SIZE (INT32 [B, 2]: height, width).

    The chroma is upscaled with PIL bicubic to H x W and merged with the luma (rounded to
    uint8); PIL converts YCbCr to RGB. Same pixels, same PNG bytes. Rows holding NaN or Inf are
    row errors.
    """
    encoded, sizes, errors = sr.encode_upscaled(require_input(inputs, UPSCALED),
                                                require_input(inputs, CHROMA))
    return StepResult(outputs={PNG: encoded, SIZE: sizes}, errors=errors)
