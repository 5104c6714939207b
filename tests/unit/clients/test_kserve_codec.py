"""The KServe v2 binary-data codec against itself and against tritonclient's own encoder/parser."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonkit_client.kserve_codec import (
    HEADER_LENGTH,
    CodecError,
    Datatype,
    InferRequest,
    InferResponse,
    RequestedOutput,
    datatype_of,
    decode_error,
    decode_request,
    decode_response,
    deserialize_bytes,
    encode_error,
    encode_request,
    encode_response,
    request_headers,
    serialize_bytes,
)

PNG_LIKE = [b"\x89PNG\r\n\x1a\n" + bytes(range(40)), b"", b"\x00" * 3, "é".encode()]


def object_array(elements: list[bytes], shape: tuple[int, ...]) -> np.ndarray:
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array.reshape(shape)


@pytest.fixture
def images() -> np.ndarray:
    return object_array(PNG_LIKE, (4, 1))


NUMERIC = [
    np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    np.arange(-6, 6, dtype=np.int32).reshape(2, 6),
    np.array([[True, False, True]]),
    np.arange(5, dtype=np.uint8).reshape(5, 1),
    np.linspace(-1, 1, 6).reshape(2, 3),  # float64
    np.arange(4, dtype=np.float16).reshape(1, 4),
    np.arange(3, dtype=np.int64).reshape(3, 1) * (1 << 40),
    np.zeros((0, 3), dtype=np.float32),
]


# --------------------------------------------------------------------------- BYTES framing


def test_bytes_elements_are_length_prefixed_little_endian() -> None:
    raw = serialize_bytes([b"ab", "c", b""])
    assert raw == b"\x02\x00\x00\x00ab\x01\x00\x00\x00c\x00\x00\x00\x00"
    assert deserialize_bytes(raw, 3).tolist() == [b"ab", b"c", b""]


@pytest.mark.parametrize(("raw", "count", "problem"), [
    (b"\x05\x00\x00\x00abc", 1, "claims 5 bytes"),
    (b"\x01\x00\x00\x00ab", 1, "1 bytes after"),
    (b"\x01\x00", 1, "inside the length"),
    (struct.pack("<I", 1) + b"a", 2, "inside the length of element 1"),
])
def test_malformed_bytes_data_is_rejected(raw: bytes, count: int, problem: str) -> None:
    with pytest.raises(CodecError, match=problem):
        deserialize_bytes(raw, count)


def test_datatypes_follow_numpy_dtypes() -> None:
    assert datatype_of(np.zeros(1, np.float32)) is Datatype.FP32
    assert datatype_of(np.zeros(1, np.int64)) is Datatype.INT64
    assert datatype_of(np.zeros(1, np.bool_)) is Datatype.BOOL
    assert datatype_of(np.array([b"x"])) is Datatype.BYTES
    assert datatype_of(np.array([b"x"], dtype=object)) is Datatype.BYTES
    with pytest.raises(CodecError, match="complex"):
        datatype_of(np.zeros(1, np.complex64))


# --------------------------------------------------------------------------- round trips


def test_request_round_trip(images: np.ndarray) -> None:
    pixels = NUMERIC[0]
    body, header_length = encode_request({"IMAGE": images, "PIXELS": pixels},
                                         ["LABELS", "SCORES"], request_id="req-7")
    header = json.loads(body[:header_length])
    assert [i["name"] for i in header["inputs"]] == ["IMAGE", "PIXELS"]
    assert header["inputs"][0]["datatype"] == "BYTES"
    assert header["inputs"][0]["parameters"]["binary_data_size"] == sum(
        4 + len(e) for e in PNG_LIKE)
    assert header["inputs"][1]["parameters"]["binary_data_size"] == pixels.nbytes
    assert len(body) == header_length + sum(
        i["parameters"]["binary_data_size"] for i in header["inputs"])

    request = decode_request(body, header_length)
    assert request.request_id == "req-7"
    assert request.outputs == (RequestedOutput(name="LABELS", binary_data=True),
                               RequestedOutput(name="SCORES", binary_data=True))
    assert request.inputs["IMAGE"].shape == (4, 1)
    assert request.inputs["IMAGE"].tolist() == images.tolist()
    np.testing.assert_array_equal(request.inputs["PIXELS"], pixels)
    assert request.inputs["PIXELS"].dtype == np.float32


@pytest.mark.parametrize("array", NUMERIC, ids=lambda a: f"{a.dtype}{list(a.shape)}")
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_response_round_trip_numeric(array: np.ndarray, binary: bool) -> None:
    response = InferResponse(model_name="m", model_version="3", request_id="r",
                             outputs={"OUT": array})
    body, header_length = encode_response(
        response, [RequestedOutput(name="OUT", binary_data=binary)])
    assert (header_length is None) is (not binary)
    decoded = decode_response(body, header_length)
    assert (decoded.model_name, decoded.model_version, decoded.request_id) == ("m", "3", "r")
    assert decoded.outputs["OUT"].dtype == array.dtype
    np.testing.assert_array_equal(decoded.outputs["OUT"], array)


def test_response_selects_and_orders_the_requested_outputs() -> None:
    response = InferResponse(model_name="digits", outputs={
        "LABELS": object_array([b"seven", b"one"], (1, 2)),
        "SCORES": np.array([[0.75, 0.25]], np.float32),
        "CLASS_INDICES": np.array([[7, 1]], np.int32)})
    request = InferRequest(inputs={}, outputs=(
        RequestedOutput(name="SCORES"), RequestedOutput(name="LABELS", binary_data=False)))
    body, header_length = encode_response(
        response, request.resolve_outputs(list(response.outputs)))
    assert header_length is not None
    header = json.loads(body[:header_length])
    assert [o["name"] for o in header["outputs"]] == ["SCORES", "LABELS"]
    assert header["outputs"][1]["data"] == ["seven", "one"]
    decoded = decode_response(body, header_length)
    assert list(decoded.outputs) == ["SCORES", "LABELS"]
    assert decoded.outputs["LABELS"].tolist() == [[b"seven", b"one"]]


def test_no_requested_outputs_means_all_in_the_default_form() -> None:
    request = InferRequest(inputs={}, binary_data_output=True)
    assert request.resolve_outputs(["A", "B"]) == (
        RequestedOutput(name="A", binary_data=True), RequestedOutput(name="B", binary_data=True))
    with pytest.raises(CodecError, match=r"unexpected inference output\(s\) \['C'\]"):
        InferRequest(inputs={}, outputs=(RequestedOutput(name="C"),)).resolve_outputs(["A"])


def test_json_only_request_is_read() -> None:
    body = json.dumps({"inputs": [
        {"name": "X", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4]]},
        {"name": "S", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]}).encode()
    request = decode_request(body, None)
    assert request.inputs["X"].dtype == np.int32
    assert request.inputs["X"].tolist() == [[1, 2], [3, 4]]
    assert request.inputs["S"].tolist() == [b"hi"]
    assert request.outputs == ()
    assert request.binary_data_output is False


# --------------------------------------------------------------------------- malformed bodies


def test_malformed_requests_name_the_problem(images: np.ndarray) -> None:
    body, header_length = encode_request({"IMAGE": images}, ["LABELS"])
    with pytest.raises(CodecError, match=HEADER_LENGTH):
        decode_request(body, len(body) + 1)
    with pytest.raises(CodecError, match="not valid JSON"):
        decode_request(body, header_length - 1)
    with pytest.raises(CodecError, match="overruns the body"):
        decode_request(body[:-1], header_length)
    with pytest.raises(CodecError, match="2 bytes follow the last binary tensor"):
        decode_request(body + b"xx", header_length)
    bad_type = body[:header_length].replace(b'"BYTES"', b'"STRING"')
    with pytest.raises(CodecError, match="unsupported datatype 'STRING'"):
        decode_request(bad_type + body[header_length:], len(bad_type))
    wrong_size = json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [3],
                                         "parameters": {"binary_data_size": 8}}]}).encode()
    with pytest.raises(CodecError, match="needs 12 bytes, got 8"):
        decode_request(wrong_size + bytes(8), len(wrong_size))
    with pytest.raises(CodecError, match="shape must be a list"):
        decode_request(b'{"inputs":[{"name":"X","datatype":"FP32","shape":[-1],"data":[]}]}',
                       None)


def test_error_bodies() -> None:
    assert decode_error(encode_error("bad image")) == "bad image"
    with pytest.raises(CodecError, match="error response: boom"):
        decode_response(encode_error("boom"), None)
    with pytest.raises(CodecError, match="no 'error'"):
        decode_error(b"{}")


def test_request_headers() -> None:
    assert request_headers(123) == {HEADER_LENGTH: "123",
                                    "Content-Type": "application/octet-stream"}


# --------------------------------------------------------------------------- tritonclient


def triton_input(name: str, array: np.ndarray, *, binary: bool = True) -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, list(array.shape), datatype_of(array).value)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def test_tritonclient_request_bodies_decode(images: np.ndarray) -> None:
    pixels = NUMERIC[0]
    flags = np.array([[True, False]])
    body, header_length = httpclient.InferenceServerClient.generate_request_body(
        [triton_input("IMAGE", images), triton_input("PIXELS", pixels),
         triton_input("FLAGS", flags, binary=False)],
        outputs=[httpclient.InferRequestedOutput("LABELS", binary_data=True),
                 httpclient.InferRequestedOutput("SCORES", binary_data=False)],
        request_id="tc-1")
    request = decode_request(body, header_length)
    assert request.request_id == "tc-1"
    assert request.inputs["IMAGE"].tolist() == images.tolist()
    np.testing.assert_array_equal(request.inputs["PIXELS"], pixels)
    np.testing.assert_array_equal(request.inputs["FLAGS"], flags)
    assert request.outputs == (RequestedOutput(name="LABELS", binary_data=True),
                               RequestedOutput(name="SCORES", binary_data=False))


@pytest.mark.parametrize("outputs", [["LABELS", "SCORES"], []], ids=["named", "all"])
def test_requests_are_byte_identical_to_tritonclient(images: np.ndarray,
                                                     outputs: list[str]) -> None:
    ours = encode_request({"IMAGE": images, "PIXELS": NUMERIC[0]}, outputs, request_id="x")
    theirs = httpclient.InferenceServerClient.generate_request_body(
        [triton_input("IMAGE", images), triton_input("PIXELS", NUMERIC[0])],
        outputs=[httpclient.InferRequestedOutput(name) for name in outputs] or None,
        request_id="x")
    assert ours == theirs


def test_tritonclient_parses_our_responses() -> None:
    labels = object_array([b"seven", b"one", b"", b"four"], (2, 2))
    scores = np.array([[0.75, 0.25], [0.5, 0.5]], np.float32)
    indices = np.array([[7, 1], [0, 4]], np.int32)
    response = InferResponse(model_name="digits", model_version="1", request_id="abc",
                             outputs={"LABELS": labels, "SCORES": scores,
                                      "CLASS_INDICES": indices})
    body, header_length = encode_response(response, [
        RequestedOutput(name="LABELS"), RequestedOutput(name="SCORES"),
        RequestedOutput(name="CLASS_INDICES", binary_data=False)])
    result = httpclient.InferenceServerClient.parse_response_body(
        body, header_length=header_length)
    assert result.get_response()["model_name"] == "digits"
    assert result.get_response()["id"] == "abc"
    assert result.as_numpy("LABELS").tolist() == labels.tolist()
    np.testing.assert_array_equal(result.as_numpy("SCORES"), scores)
    np.testing.assert_array_equal(result.as_numpy("CLASS_INDICES"), indices)
    assert result.as_numpy("CLASS_INDICES").dtype == np.int32
