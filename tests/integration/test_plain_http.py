"""A plain HTTP client (urllib.request only, no tritonclient) speaks KServe v2 to the server.

It reads the pipeline's metadata, sends encoded images with the binary tensor data extension
(JSON header, `Inference-Header-Content-Length`, BYTES elements as a 4-byte little-endian
length followed by the bytes), parses the binary response, and gets the same answers as the
in-process reference: the PROBABILITIES tensor, and the top 3 of Triton's classification
extension (`"parameters": {"classification": 3}` on the output) as `classification_strings`
writes them for the reference with the repository's labels file.
"""

from __future__ import annotations

import json
import struct
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tritonkit_client.kserve_codec import classification_strings

from examples.model_zoo.digits import encoded_split
from tritonkit.build.reference_runner import ReferencePipeline
from tritonkit.server.local_triton import ServerURLs

pytestmark = pytest.mark.integration

PIPELINE = "digits"
OUTPUT = "PROBABILITIES"
CLASSES = 10
TOP_K = 3
IMAGES = 20
PROBABILITY_ATOL = 1e-6
SCORE_ATOL = 1e-5
TIMEOUT_S = 30.0
HEADER_LENGTH = "Inference-Header-Content-Length"
LENGTH_PREFIX = struct.Struct("<I")
FIXED_DTYPES: dict[str, str] = {
    "FP32": "<f4",
    "FP64": "<f8",
    "FP16": "<f2",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "BOOL": "?",
}


@dataclass(frozen=True, kw_only=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, kw_only=True)
class InferRequestBody:
    body: bytes
    header_length: int


def http_call(
    url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> HttpAnswer:
    """GET (no body) or POST; HTTP errors are answers too, not exceptions."""
    request = urllib.request.Request(
        url, data=body, headers=headers or {}, method="GET" if body is None else "POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return HttpAnswer(
                status=response.status, headers=dict(response.headers), body=response.read()
            )
    except urllib.error.HTTPError as e:
        return HttpAnswer(status=e.code, headers=dict(e.headers), body=e.read())


def serialize_bytes_elements(elements: Sequence[bytes]) -> bytes:
    return b"".join(LENGTH_PREFIX.pack(len(e)) + e for e in elements)


def deserialize_bytes_elements(raw: bytes) -> list[bytes]:
    elements, offset = [], 0
    while offset < len(raw):
        (length,) = LENGTH_PREFIX.unpack_from(raw, offset)
        offset += LENGTH_PREFIX.size
        elements.append(raw[offset : offset + length])
        offset += length
    assert offset == len(raw), "BYTES elements overrun their blob"
    return elements


def build_infer_request(
    input_name: str, images: Sequence[bytes], output_names: Sequence[str], *, class_count: int = 0
) -> InferRequestBody:
    """A KServe v2 request: JSON header, then the input's binary blob. `class_count` > 0 asks
    for every output's top classes (the classification extension) instead of the tensor."""
    blob = serialize_bytes_elements(images)
    parameters: dict[str, Any] = {"binary_data": True}
    if class_count:
        parameters["classification"] = class_count
    header = {
        "inputs": [
            {
                "name": input_name,
                "datatype": "BYTES",
                "shape": [len(images), 1],
                "parameters": {"binary_data_size": len(blob)},
            }
        ],
        "outputs": [{"name": name, "parameters": parameters} for name in output_names],
    }
    encoded = json.dumps(header).encode("utf-8")
    return InferRequestBody(body=encoded + blob, header_length=len(encoded))


def split_classification(value: bytes) -> tuple[float, int, str]:
    """One element of a classification answer, `score:index:label`."""
    score, index, label = value.decode("utf-8").split(":", 2)
    return float(score), int(index), label


def parse_infer_response(answer: HttpAnswer) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The response's JSON header and its outputs: blobs follow the header in output order."""
    header_length = int(answer.headers[HEADER_LENGTH])
    header = json.loads(answer.body[:header_length])
    outputs: dict[str, np.ndarray] = {}
    offset = header_length
    for output in header["outputs"]:
        size = int(output["parameters"]["binary_data_size"])
        raw = answer.body[offset : offset + size]
        assert len(raw) == size
        offset += size
        shape = tuple(int(d) for d in output["shape"])
        if output["datatype"] == "BYTES":
            array = np.empty(len(deserialize_bytes_elements(raw)), dtype=object)
            array[:] = deserialize_bytes_elements(raw)
            outputs[output["name"]] = array.reshape(shape)
        else:
            dtype = np.dtype(FIXED_DTYPES[output["datatype"]])
            outputs[output["name"]] = np.frombuffer(raw, dtype=dtype).reshape(shape)
    assert offset == len(answer.body), "bytes left after the last output"
    return header, outputs


@pytest.fixture(scope="module")
def samples() -> tuple[list[bytes], np.ndarray]:
    """IMAGES images spread evenly over the test split (its first 20 hold 2 of the model's
    4 errors on the 540 images: rows 2 and 15)."""
    images, labels = encoded_split("test")
    rows = np.linspace(0, len(images) - 1, IMAGES).astype(int)
    return [images[i] for i in rows], labels[rows]


@pytest.fixture(scope="module")
def metadata(triton: ServerURLs) -> dict[str, Any]:
    answer = http_call(f"{triton.http}/v2/models/{PIPELINE}")
    assert answer.status == 200, answer.body
    data: dict[str, Any] = json.loads(answer.body)
    return data


def test_health_endpoints(triton: ServerURLs) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{PIPELINE}/ready"):
        assert http_call(f"{triton.http}{path}").status == 200, path
    assert http_call(f"{triton.http}/v2/models/no_such_model/ready").status != 200


def test_metadata(metadata: dict[str, Any]) -> None:
    assert metadata["name"] == PIPELINE
    assert metadata["platform"] == "ensemble"
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
        ("IMAGE", "BYTES", [-1, 1])
    ]
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["outputs"]] == [
        (OUTPUT, "FP32", [-1, CLASSES])
    ]


def infer(triton: ServerURLs, request: InferRequestBody) -> HttpAnswer:
    return http_call(
        f"{triton.http}/v2/models/{PIPELINE}/infer",
        body=request.body,
        headers={
            HEADER_LENGTH: str(request.header_length),
            "Content-Type": "application/octet-stream",
        },
    )


def test_binary_request_gives_the_reference_answers(
    triton: ServerURLs,
    metadata: dict[str, Any],
    samples: tuple[list[bytes], np.ndarray],
    example_repository: Path,
) -> None:
    images, labels = samples
    (image_input,) = metadata["inputs"]
    output_names = [t["name"] for t in metadata["outputs"]]
    answer = infer(triton, build_infer_request(image_input["name"], images, output_names))
    assert answer.status == 200, answer.body[:500]
    header, outputs = parse_infer_response(answer)
    assert header["model_name"] == PIPELINE
    # Blobs follow the order of the response's "outputs", which need not be the request's.
    assert sorted(o["name"] for o in header["outputs"]) == sorted(output_names) == [OUTPUT]
    probabilities = outputs[OUTPUT]
    assert probabilities.shape == (IMAGES, CLASSES)
    assert probabilities.dtype == np.float32

    # The classification extension: the server ranks, k strings per image come back.
    answer = infer(
        triton,
        build_infer_request(image_input["name"], images, [OUTPUT], class_count=TOP_K),
    )
    assert answer.status == 200, answer.body[:500]
    header, classes = parse_infer_response(answer)
    assert [(o["name"], o["datatype"]) for o in header["outputs"]] == [(OUTPUT, "BYTES")]
    assert classes[OUTPUT].shape == (IMAGES, TOP_K)
    served = [[split_classification(v) for v in row] for row in classes[OUTPUT]]

    top1 = np.array([int(row[0][2]) for row in served])  # labels.txt names the digits "0".."9"
    np.testing.assert_array_equal(top1, [row[0][1] for row in served])
    np.testing.assert_array_equal(top1, probabilities.argmax(axis=1))
    assert int(np.sum(top1 == labels)) >= IMAGES - 1

    expected = ReferencePipeline(example_repository, PIPELINE)(
        {"IMAGE": np.array(images, dtype=object).reshape(-1, 1)}
    )
    np.testing.assert_allclose(probabilities, expected[OUTPUT], rtol=0, atol=PROBABILITY_ATOL)
    label_names = (example_repository / PIPELINE / "labels.txt").read_text().splitlines()
    reference = [
        [split_classification(v) for v in row]
        for row in classification_strings(expected[OUTPUT], TOP_K, label_names)
    ]
    assert [[(i, label) for _, i, label in row] for row in served] == [
        [(i, label) for _, i, label in row] for row in reference
    ]
    np.testing.assert_allclose(
        [[score for score, _, _ in row] for row in served],
        [[score for score, _, _ in row] for row in reference],
        rtol=0,
        atol=SCORE_ATOL,
    )


def test_corrupt_image_is_a_400_with_the_reason(
    triton: ServerURLs, samples: tuple[list[bytes], np.ndarray]
) -> None:
    images, _ = samples
    corrupt = images[1][: len(images[1]) // 2]
    request = build_infer_request("IMAGE", [images[0], corrupt], [OUTPUT], class_count=TOP_K)
    answer = http_call(
        f"{triton.http}/v2/models/{PIPELINE}/infer",
        body=request.body,
        headers={HEADER_LENGTH: str(request.header_length)},
    )
    assert answer.status == 400
    error = json.loads(answer.body)["error"]
    assert "row 1" in error
    assert "truncated" in error
