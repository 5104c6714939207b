"""examples.demo.super_resolution and the demo summary's super-resolution lines: the pure parts
(degradation, PSNR, the OK rule). The served figures are in
tests/integration/test_super_resolution_serving.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from examples.demo.summary import MIN_PSNR_GAIN_DB, super_resolution_lines
from examples.demo.super_resolution import (
    SuperResolutionReport,
    SuperResolutionRun,
    bicubic_psnr,
    decode_rgb,
    held_out_image,
    mean_psnr,
)
from examples.model_zoo import super_resolution as zoo
from tritonkit.errors import ToolkitError
from tritonkit.processing import super_resolution as sr


def _photo(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    smooth = 127 + 60 * np.sin(x / 7.0) * np.cos(y / 5.0)
    return np.stack([smooth, smooth[::-1], 255 - smooth], axis=-1).astype(np.uint8)


def _report(served: tuple[float, float], reference: float,
            bicubic: float) -> SuperResolutionReport:
    return SuperResolutionReport(
        images=3, reference_psnr=reference, bicubic_psnr=bicubic,
        runs=(SuperResolutionRun(protocol="HTTP", psnr=served[0], seconds=0.1),
              SuperResolutionRun(protocol="gRPC", psnr=served[1], seconds=0.1)))


def test_held_out_image_is_degraded_as_the_zoo_evaluates(tmp_path: Path) -> None:
    hr = _photo(41, 30)  # odd height: cropped to even, as load_photo does
    path = tmp_path / "odd.png"
    path.write_bytes(sr.encode_png(hr))
    image = held_out_image(path)
    assert image.name == "odd"
    np.testing.assert_array_equal(image.high_res, hr[:40])
    np.testing.assert_array_equal(image.low_res, sr.downscale(hr[:40], zoo.SCALE))
    np.testing.assert_array_equal(decode_rgb(image.low_res_png), image.low_res)


def test_mean_psnr_and_bicubic_baseline(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    path.write_bytes(sr.encode_png(_photo(32, 48)))
    image = held_out_image(path)
    assert mean_psnr([image.high_res], [image]) == sr.MAX_PSNR_DB
    baseline = sr.bicubic_upscale(image.low_res, 2, size=(32, 48))
    assert bicubic_psnr([image]) == pytest.approx(sr.psnr_y(baseline, image.high_res))
    with pytest.raises(ToolkitError, match="expected 32x48"):
        mean_psnr([image.low_res], [image])


def test_summary_ok_only_with_gain_and_agreement() -> None:
    ok = super_resolution_lines(_report((30.004, 30.004), 30.004, 28.7308))
    assert [flag for _, flag in ok] == [True, True]
    assert ok[0][0] == ("super-resolution PSNR   HTTP 30.00 dB (in-process 30.00, bicubic "
                        "28.73, +1.27 dB, bar +1.0)")
    assert ok[1][0].startswith("super-resolution PSNR   gRPC 30.00 dB")
    disagree = super_resolution_lines(_report((30.02, 30.005), 30.004, 28.73))
    assert [flag for _, flag in disagree] == [False, True]
    small_gain = super_resolution_lines(_report((29.7, 29.7), 29.7, 29.7 - MIN_PSNR_GAIN_DB + 0.01))
    assert [flag for _, flag in small_gain] == [False, False]
