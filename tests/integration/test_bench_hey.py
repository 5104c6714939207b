"""hey drives the real local Triton with a real KServe binary request (one digits PNG).

The body asks for what the benchmark runner asks for: the top classes of PROBABILITIES through
Triton's classification extension.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import numpy as np
import pytest
from tritonkit_client.kserve_codec import (
    HEADER_LENGTH,
    classification_strings,
    decode_request,
    decode_response,
    encode_request,
    request_headers,
)
from tritonkit_client.tasks import parse_classifications

from examples.model_zoo.digits import encoded_split
from harness.benchmarks.errors import BenchmarkError
from harness.benchmarks.hey_driver import find_hey, run_hey
from harness.benchmarks.workloads import CLASS_COUNTS, CLASSIFICATION_OUTPUTS
from tritonkit.build import ReferencePipeline
from tritonkit.server.local_triton import ServerURLs

pytestmark = pytest.mark.integration

PIPELINE = "digits"
OUTPUT = "PROBABILITIES"
TOP_K = CLASS_COUNTS[OUTPUT]


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
    body, header_length = encode_request({"IMAGE": image}, CLASSIFICATION_OUTPUTS,
                                         class_counts=CLASS_COUNTS)
    return body, request_headers(header_length), int(labels[0])


def test_the_body_is_a_valid_request(triton: ServerURLs, example_repository: Path,
                                     digits_request: tuple[bytes, dict[str, str], int]) -> None:
    """The exact bytes hey repeats get the right answer from Triton: the top classes of the
    in-process reference, the true digit first."""
    body, headers, label = digits_request
    request = urllib.request.Request(f"{triton.http}/v2/models/{PIPELINE}/infer", data=body,
                                     headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
        response = decode_response(answer.read(), int(answer.headers[HEADER_LENGTH]))
    assert list(response.outputs) == [OUTPUT]
    assert response.outputs[OUTPUT].shape == (1, TOP_K)
    (top,) = parse_classifications(response.outputs[OUTPUT])
    assert top[0].index == label
    labels = (example_repository / PIPELINE / "labels.txt").read_text().splitlines()
    sent = decode_request(body, int(headers[HEADER_LENGTH]))
    assert [(o.name, o.class_count) for o in sent.outputs] == [(OUTPUT, TOP_K)]
    expected = ReferencePipeline(example_repository, PIPELINE)(sent.inputs)[OUTPUT]
    assert response.outputs[OUTPUT].tolist() == classification_strings(
        expected, TOP_K, labels).tolist()
    order = np.argsort(-expected[0], kind="stable")[:TOP_K]
    assert [(c.index, c.label) for c in top] == [(int(i), labels[i]) for i in order]


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
