"""hey drives the real local Triton with a real KServe binary request (one digits PNG)."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest
from tritonkit_client.kserve_codec import (
    HEADER_LENGTH,
    decode_response,
    encode_request,
    request_headers,
)

from examples.model_zoo.digits import encoded_split
from harness.benchmarks.errors import BenchmarkError
from harness.benchmarks.hey_driver import find_hey, run_hey
from tritonkit.server.local_triton import ServerURLs

pytestmark = pytest.mark.integration

PIPELINE = "digits"
OUTPUTS = ("LABELS", "SCORES", "CLASS_INDICES")


def hey_available() -> bool:
    try:
        find_hey()
    except BenchmarkError:
        return False
    return True


@pytest.fixture(scope="module")
def digits_request() -> tuple[bytes, dict[str, str], int]:
    """One test-split PNG as the body hey repeats, its headers and its label."""
    images, labels = encoded_split("test")
    image = np.empty((1, 1), dtype=object)
    image[0, 0] = images[0]
    body, header_length = encode_request({"IMAGE": image}, OUTPUTS)
    return body, request_headers(header_length), int(labels[0])


def test_the_body_is_a_valid_request(triton: ServerURLs,
                                     digits_request: tuple[bytes, dict[str, str], int]) -> None:
    """The exact bytes hey repeats get the right answer from Triton."""
    body, headers, label = digits_request
    request = urllib.request.Request(f"{triton.http}/v2/models/{PIPELINE}/infer", data=body,
                                     headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
        response = decode_response(answer.read(), int(answer.headers[HEADER_LENGTH]))
    assert int(response.outputs["CLASS_INDICES"][0, 0]) == label


def test_hey_against_triton(triton: ServerURLs,
                            digits_request: tuple[bytes, dict[str, str], int]) -> None:
    if not hey_available():
        pytest.skip("hey is not installed (apt-get install -y hey)")
    body, headers, _ = digits_request
    result = run_hey(f"{triton.http}/v2/models/{PIPELINE}/infer", body, headers,
                     concurrency=4, duration_s=1.5, system="triton")
    assert result.system == "triton" and result.concurrency == 4
    assert result.errors == 0
    assert result.requests > 0 and result.throughput_rps > 0
    assert 1.5 <= result.duration_s < 4.0
    assert result.throughput_rps == pytest.approx(result.requests / result.duration_s)
    assert 0 < result.p50_ms <= result.p90_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
