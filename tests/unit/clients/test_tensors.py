"""numpy to tritonclient and back: input conversion, binary requests over HTTP and gRPC, and
outputs read from real tritonclient results."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import serialize_byte_tensor
from tritonkit_client._tensors import build_request, prepare_inputs, read_outputs, triton_datatype
from tritonkit_client.errors import InvalidInputError, ServerError
from tritonkit_client.options import Protocol


def test_prepare_inputs_maps_strings_and_bytes_to_object_arrays() -> None:
    arrays = prepare_inputs(
        {
            "obj": np.array([[b"a\x00"], [b"bc"]], dtype=object),
            "fixed": np.array([b"xy", b"z"]),
            "text": np.array(["h\u00e9"]),
            "floats": np.ones((2, 3), dtype=np.float16),
        }
    )
    assert arrays["obj"].dtype == np.object_ and arrays["obj"][0, 0] == b"a\x00"
    assert arrays["fixed"].dtype == np.object_ and list(arrays["fixed"]) == [b"xy", b"z"]
    assert arrays["text"][0] == "h\u00e9".encode()
    assert arrays["floats"].dtype == np.float16
    assert all(a.flags["C_CONTIGUOUS"] for a in arrays.values())


def test_prepare_inputs_makes_views_contiguous() -> None:
    base = np.arange(12, dtype=np.int32).reshape(3, 4)
    arrays = prepare_inputs({"x": base[:, ::2]})
    assert arrays["x"].flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(arrays["x"], base[:, ::2])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.float32(1.0), "scalar"),
        (np.ones(3, dtype=np.complex64), "no Triton type"),
        (np.array([1, b"x"], dtype=object), "holds bytes or str"),
    ],
)
def test_prepare_inputs_rejects(value: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        prepare_inputs({"x": value})
    with pytest.raises(InvalidInputError, match="at least one input"):
        prepare_inputs({})


def test_http_request_sends_every_tensor_as_binary() -> None:
    arrays = prepare_inputs(
        {
            "X": np.ones((2, 3), dtype=np.float32),
            "IMAGE": np.array([[b"png"], [b"jpg"]], dtype=object),
        }
    )
    inputs, outputs = build_request(Protocol.HTTP, arrays, ["Y", "LABELS"])
    assert [(i.name(), i.datatype(), i.shape()) for i in inputs] == [
        ("X", "FP32", [2, 3]),
        ("IMAGE", "BYTES", [2, 1]),
    ]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs
    )
    header = json.loads(body[:json_size])
    sizes = [t["parameters"]["binary_data_size"] for t in header["inputs"]]
    assert sizes == [24, 2 * (4 + 3)]
    assert all("data" not in t for t in header["inputs"])  # no JSON tensors
    assert [o["parameters"]["binary_data"] for o in header["outputs"]] == [True, True]
    assert len(body) == json_size + sum(sizes)


def test_http_request_without_outputs_asks_for_binary_outputs() -> None:
    inputs, outputs = build_request(Protocol.HTTP, prepare_inputs({"X": np.ones((1, 3))}), None)
    assert outputs is None
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs)
    assert json.loads(body[:json_size])["parameters"]["binary_data_output"] is True
    assert inputs[0].datatype() == "FP64"


def test_grpc_request_carries_raw_contents() -> None:
    arrays = prepare_inputs({"X": np.arange(6, dtype=np.int64).reshape(2, 3)})
    inputs, outputs = build_request(Protocol.GRPC, arrays, ["Y"])
    assert (inputs[0].datatype(), inputs[0].shape()) == ("INT64", [2, 3])
    assert inputs[0]._get_content() == arrays["X"].tobytes()  # tritonclient's raw content
    assert outputs is not None and len(outputs) == 1


def grpc_result(tensors: dict[str, np.ndarray]) -> grpcclient.InferResult:
    response = service_pb2.ModelInferResponse(model_name="m")
    for name, array in tensors.items():
        datatype = "BYTES" if array.dtype == np.object_ else "FP32"
        response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        raw = serialize_byte_tensor(array).item() if datatype == "BYTES" else array.tobytes()
        response.raw_output_contents.append(raw)
    return grpcclient.InferResult(response)


def http_result(name: str, array: np.ndarray) -> httpclient.InferResult:
    header = json.dumps(
        {
            "model_name": "m",
            "outputs": [
                {
                    "name": name,
                    "datatype": "FP32",
                    "shape": list(array.shape),
                    "parameters": {"binary_data_size": array.nbytes},
                }
            ],
        }
    ).encode()
    return httpclient.InferenceServerClient.parse_response_body(
        header + array.tobytes(), header_length=len(header)
    )


def test_read_outputs_from_real_results() -> None:
    y = np.arange(6, dtype=np.float32).reshape(2, 3)
    labels = np.array([[b"seven"], [b"one"]], dtype=object)
    outputs = read_outputs(grpc_result({"Y": y, "LABELS": labels}), None, context="infer")
    assert set(outputs) == {"Y", "LABELS"}
    np.testing.assert_array_equal(outputs["Y"], y)
    assert outputs["LABELS"][0, 0] == b"seven"
    np.testing.assert_array_equal(read_outputs(http_result("Y", y), ["Y"], context="x")["Y"], y)
    np.testing.assert_array_equal(read_outputs(http_result("Y", y), None, context="x")["Y"], y)


def test_read_outputs_reports_a_missing_output() -> None:
    with pytest.raises(ServerError, match="no output 'Z'"):
        read_outputs(grpc_result({"Y": np.zeros((1, 1), np.float32)}), ["Z"], context="infer")


def test_triton_datatype() -> None:
    assert triton_datatype(np.zeros(1, dtype=np.uint8)) == "UINT8"
    assert triton_datatype(np.array([b"x"], dtype=object)) == "BYTES"
    with pytest.raises(InvalidInputError, match="no Triton type"):
        triton_datatype(np.zeros(1, dtype=np.complex128))
