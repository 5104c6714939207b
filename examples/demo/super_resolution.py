"""Super-resolution end to end: mean PSNR on Y of the x2 upscale of held-out photographs,
served over HTTP and gRPC next to the in-process figure and the bicubic baseline.

The inputs are made as the model zoo made its held-out figures (metrics.json): LR = PIL
bicubic downscale by 2 of the HR photograph, sent as PNG; PSNR on Y (PIL YCbCr) with a 2 px
border crop against the HR photograph. The served figure is therefore comparable with
metrics.json's `mean.model_psnr`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tritonkit_client import upscale

from examples.demo.protocols import over_protocols
from examples.model_zoo import super_resolution as zoo
from tritonkit.build import ReferencePipeline, export_pytorch_sources
from tritonkit.errors import ToolkitError
from tritonkit.processing import super_resolution as sr
from tritonkit.server import ServerURLs
from tritonkit.spec import BuildSpec

log = logging.getLogger(__name__)

PIPELINE = "super_resolution"
TOLERANCE_DB = 0.01  # served and in-process mean PSNR must agree to this


@dataclass(frozen=True, kw_only=True)
class SuperResolutionRun:
    protocol: str
    psnr: float  # mean PSNR on Y over the held-out images, dB
    seconds: float


@dataclass(frozen=True, kw_only=True)
class SuperResolutionReport:
    images: int
    reference_psnr: float  # in-process (the same steps and ONNX model), dB
    bicubic_psnr: float  # PIL bicubic upscale of the same LR images, dB
    runs: tuple[SuperResolutionRun, ...]


@dataclass(frozen=True, kw_only=True)
class HeldOutImage:
    """One held-out photograph: the HR pixels and the LR PNG sent to the pipeline."""

    name: str
    high_res: np.ndarray  # uint8 RGB [H, W, 3], H and W even
    low_res: np.ndarray  # uint8 RGB [H/2, W/2, 3]
    low_res_png: bytes


def decode_rgb(png: bytes) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 RGB [H, W, 3]."""
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def held_out_image(path: Path) -> HeldOutImage:
    """The HR photograph at `path` and its LR input, degraded as the zoo's evaluation does."""
    high = sr.crop_to_multiple(decode_rgb(path.read_bytes()), zoo.SCALE)
    low = sr.downscale(high, zoo.SCALE)
    return HeldOutImage(name=path.stem, high_res=high, low_res=low,
                        low_res_png=sr.encode_png(low))


def mean_psnr(upscaled: Sequence[np.ndarray], images: Sequence[HeldOutImage]) -> float:
    """Mean PSNR on Y (2 px border crop) of upscaled RGB images against their HR images."""
    figures = []
    for rgb, image in zip(upscaled, images, strict=True):
        if rgb.shape != image.high_res.shape:
            raise ToolkitError(f"{image.name}: the upscaled image is {rgb.shape[0]}x"
                               f"{rgb.shape[1]}, expected {image.high_res.shape[0]}x"
                               f"{image.high_res.shape[1]} (twice the input)")
        figures.append(sr.psnr_y(rgb, image.high_res, crop=sr.BORDER))
    return float(np.mean(figures))


def bicubic_psnr(images: Sequence[HeldOutImage]) -> float:
    """The baseline: PIL bicubic upscale of each LR image to its HR size."""
    return mean_psnr([sr.bicubic_upscale(i.low_res, zoo.SCALE) for i in images], images)


def reference_upscale(repository: Path, spec: BuildSpec,
                      images: Sequence[HeldOutImage]) -> list[np.ndarray]:
    """The same step functions and ONNX model, run in this process (one image a request, as
    the client sends them: sizes may differ)."""
    exported = export_pytorch_sources(spec)
    pipeline = ReferencePipeline(repository, PIPELINE,
                                 onnx_models={m.name: m.onnx for m in exported.models})
    results = []
    for image in images:
        out = pipeline({"IMAGE": np.array([image.low_res_png], dtype=object).reshape(1, 1)})
        results.append(decode_rgb(bytes(np.asarray(out["PNG"]).reshape(-1)[0])))
    return results


def run_super_resolution(repository: Path, spec: BuildSpec, urls: ServerURLs, *,
                         images: Sequence[Path] | None = None) -> SuperResolutionReport:
    """Served (HTTP, gRPC), in-process and bicubic mean PSNR on the held-out photographs
    (default: artifacts/super_resolution/holdout/ next to the spec)."""
    paths = tuple(images) if images is not None else zoo.holdout_paths(
        spec.base_dir / "artifacts" / "super_resolution")
    held_out = [held_out_image(p) for p in paths]
    reference = mean_psnr(reference_upscale(repository, spec, held_out), held_out)
    runs = [SuperResolutionRun(protocol=protocol, seconds=seconds,
                               psnr=mean_psnr([decode_rgb(r.png) for r in results], held_out))
            for protocol, results, seconds in over_protocols(
                urls, PIPELINE,
                lambda client: upscale(client, PIPELINE, [i.low_res_png for i in held_out]))]
    return SuperResolutionReport(images=len(held_out), reference_psnr=reference,
                                 bicubic_psnr=bicubic_psnr(held_out), runs=tuple(runs))
