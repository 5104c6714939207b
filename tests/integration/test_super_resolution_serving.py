"""x2 super-resolution served by the real local Triton (the session fixture), over HTTP and gRPC:
PSNR on held-out photographs, bad inputs failing only their own request, and the CLI."""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tritonkit_client import (
    InvalidInputError,
    UpscaledImage,
    connect,
    connect_async,
    upscale,
    upscale_async,
)

from examples.demo.super_resolution import (
    TOLERANCE_DB,
    HeldOutImage,
    SuperResolutionReport,
    decode_rgb,
    run_super_resolution,
)
from examples.model_zoo.super_resolution import SuperResolutionArtifacts, build_super_resolution
from tritonkit.processing import super_resolution as sr
from tritonkit.server.local_triton import ServerURLs
from tritonkit.spec import load_spec

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINE = "super_resolution"
PROTOCOLS = ["http", "grpc"]
MIN_GAIN_DB = 1.0
OUTPUTS = ["PNG", "SIZE"]


def url_for(triton: ServerURLs, protocol: str) -> str:
    return triton.http if protocol == "http" else triton.grpc


@pytest.fixture(scope="module")
def sr_artifacts() -> SuperResolutionArtifacts:
    """Already built by the session's example_repository; this call reads the stamp."""
    return build_super_resolution(REPO_ROOT / "artifacts" / "super_resolution")


@pytest.fixture(scope="module")
def report(example_repository: Path, triton: ServerURLs,
           sr_artifacts: SuperResolutionArtifacts) -> SuperResolutionReport:
    spec = load_spec(REPO_ROOT / "models.yaml")
    return run_super_resolution(example_repository, spec, triton,
                                images=sr_artifacts.holdout_images)


@pytest.fixture(scope="module")
def small_image(sr_artifacts: SuperResolutionArtifacts) -> HeldOutImage:
    """A non-square LR image (40 x 64) cut from a held-out photograph."""
    high = decode_rgb(sr_artifacts.holdout_images[0].read_bytes())[:80, :128]
    low = sr.downscale(high)
    return HeldOutImage(name="crop", high_res=high, low_res=low, low_res_png=sr.encode_png(low))


def _png(height: int, width: int) -> bytes:
    rng = np.random.default_rng(height * 1000 + width)
    return sr.encode_png(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _assert_upscaled(result: UpscaledImage, image: HeldOutImage) -> None:
    height, width = image.low_res.shape[:2]
    assert (result.height, result.width) == (2 * height, 2 * width)
    assert decode_rgb(result.png).shape == (2 * height, 2 * width, 3)


# --- PSNR on the held-out photographs ------------------------------------------------------


def test_held_out_inputs_are_those_of_the_zoo_figures(
        sr_artifacts: SuperResolutionArtifacts, report: SuperResolutionReport) -> None:
    """Same degradation as metrics.json: the bicubic baseline reproduces its figure."""
    metrics = json.loads(sr_artifacts.metrics.read_text(encoding="utf-8"))
    assert report.images == len(metrics["holdout"]) == 3
    assert report.bicubic_psnr == pytest.approx(metrics["mean"]["bicubic_psnr"], abs=1e-3)
    assert report.reference_psnr == pytest.approx(metrics["mean"]["model_psnr"],
                                                  abs=TOLERANCE_DB)


@pytest.mark.parametrize("protocol", ["HTTP", "gRPC"])
def test_served_psnr_equals_in_process_and_beats_bicubic(report: SuperResolutionReport,
                                                         protocol: str) -> None:
    run = next(r for r in report.runs if r.protocol == protocol)
    assert abs(run.psnr - report.reference_psnr) <= TOLERANCE_DB
    assert run.psnr - report.bicubic_psnr >= MIN_GAIN_DB


# --- bad inputs fail only their own request -------------------------------------------------

def _zero_sized_png(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height (PIL cannot write a 0-pixel image)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


BAD_INPUTS = {
    "over_bound": (_png(513, 20), "513x20 (height x width), above this model's bound of 512x512"),
    "empty": (b"", "empty (0 bytes)"),
    "zero_sized": (_zero_sized_png(0, 16), "PNG image has empty dimensions 0x16"),
    "undecodable": (b"not an image", "unrecognized image data"),
}


async def _bad_next_to_good(url: str, bad: bytes,
                            good: list[bytes]) -> tuple[Any, Any]:
    """The bad request and good ones in flight at once on one connection."""
    tensor = np.array([[bad]], dtype=np.object_)  # raw: the client refuses b"" itself
    async with connect_async(url, timeout_s=60) as client:
        results = await asyncio.gather(
            client.infer(PIPELINE, {"IMAGE": tensor}, outputs=OUTPUTS),
            upscale_async(client, PIPELINE, good, concurrency=len(good)),
            return_exceptions=True)
    return results[0], results[1]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_only_its_own_request(triton: ServerURLs, protocol: str, case: str,
                                              small_image: HeldOutImage) -> None:
    bad, reason = BAD_INPUTS[case]
    url = url_for(triton, protocol)
    good = [small_image.low_res_png, _png(24, 30), small_image.low_res_png]
    failed, served = asyncio.run(_bad_next_to_good(url, bad, good))
    assert isinstance(failed, InvalidInputError), failed
    assert reason in str(failed)
    assert not isinstance(served, BaseException), served
    assert len(served) == len(good)
    _assert_upscaled(served[0], small_image)
    assert (served[1].height, served[1].width) == (48, 60)
    assert served[2].png == served[0].png  # same pixels, same bytes
    with connect(url, timeout_s=60) as client:
        assert client.is_live() and client.is_model_ready(PIPELINE)
        after = upscale(client, PIPELINE, [small_image.low_res_png])[0]
    assert after.png == served[0].png


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_upscale_names_the_bad_image(triton: ServerURLs, protocol: str) -> None:
    """Through the typed helper: the server's reason reaches the caller."""
    with connect(url_for(triton, protocol), timeout_s=60) as client:
        with pytest.raises(InvalidInputError, match="unrecognized image data"):
            upscale(client, PIPELINE, [b"not an image"])
        with pytest.raises(InvalidInputError, match="empty"):
            upscale(client, PIPELINE, [b""])  # refused before it is sent


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_upscale_writes_a_png_of_twice_the_size(triton: ServerURLs, tmp_path: Path,
                                                    small_image: HeldOutImage) -> None:
    source = tmp_path / "small.png"
    source.write_bytes(small_image.low_res_png)
    out = tmp_path / "upscaled.png"
    result = subprocess.run(
        [sys.executable, "-m", "tritonkit_client", "upscale", "--url", triton.grpc,
         "--out", str(out), str(source)],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert f"{source} -> {out}: 128x80 PNG" in result.stdout  # width x height
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.size == (128, 80)  # (width, height): twice 64 x 40


def test_cli_upscale_reports_an_undecodable_file(triton: ServerURLs, tmp_path: Path) -> None:
    source = tmp_path / "notes.png"
    source.write_bytes(b"not an image")
    out = tmp_path / "never.png"
    result = subprocess.run(
        [sys.executable, "-m", "tritonkit_client", "upscale", "--url", triton.http,
         "--out", str(out), str(source)],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert "InvalidInputError" in result.stderr and "unrecognized image data" in result.stderr
    assert not out.exists()
