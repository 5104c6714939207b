"""Plain, importable pre/post-processing functions, vectorized over a batch. No Triton import.

`steps` holds the functions a spec names (`tritonkit.processing.steps:decode_png`); `images`,
`detection`, `text`, `classification` and `super_resolution` the work they do; `step_api` the
contract of a step.
"""

from tritonkit.processing import (
    classification,
    detection,
    images,
    step_api,
    steps,
    super_resolution,
    text,
)
from tritonkit.processing.detection import (
    DEFAULT_IOU_THRESHOLD,
    ImageDetections,
    decode_detections,
    detections_from_batch,
    letterbox_images,
    mean_average_precision,
)
from tritonkit.processing.images import decode_image
from tritonkit.processing.step_api import (
    DEFAULT_MAX_ELEMENT_BYTES,
    ProcessingError,
    StepConfigError,
    StepInputError,
)
from tritonkit.processing.steps import IMAGE, TEXT
from tritonkit.processing.super_resolution import bicubic_upscale, downscale, psnr_y
from tritonkit.processing.text import cosine_similarity, mean_pool, model_max_length, tokenize

__all__ = ["DEFAULT_IOU_THRESHOLD", "DEFAULT_MAX_ELEMENT_BYTES", "IMAGE", "TEXT", "ImageDetections",
           "ProcessingError", "StepConfigError", "StepInputError", "bicubic_upscale",
           "classification", "cosine_similarity", "decode_detections", "decode_image",
           "detection", "detections_from_batch", "downscale", "images", "letterbox_images",
           "mean_average_precision", "mean_pool", "model_max_length", "psnr_y", "step_api",
           "steps", "super_resolution", "text", "tokenize"]
