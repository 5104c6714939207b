"""The sync client without a server: tensor helpers, batching math, request/response handling
with real tritonclient objects, and behaviour against real refusing and silent sockets."""

from __future__ import annotations

import importlib.util
import json
import logging
import socket
import struct
import time
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import serialize_byte_tensor

from clients.errors import (
    ClientError,
    ClientTimeoutError,
    InvalidInputError,
    InvalidURLError,
    ServerError,
    ServerUnavailableError,
    SharedMemoryError,
)
from clients.options import Protocol
from clients.results import ModelMetadata, TensorMetadata
from clients.sync_client import (
    RegionSet,
    TritonClient,
    batch_size_of,
    build_request,
    build_shm_request,
    connect,
    grpc_channel_args,
    merge_batches,
    plan_input_region,
    plan_output_region,
    prepare_inputs,
    read_outputs,
    shared_memory_module,
    split_batches,
)


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


# -- batching math --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "size", "expected"),
    [
        (10, 4, [(0, 4), (4, 8), (8, 10)]),
        (8, 4, [(0, 4), (4, 8)]),
        (3, 4, [(0, 3)]),
        (1, 1, [(0, 1)]),
        (0, 4, []),
        (130, 64, [(0, 64), (64, 128), (128, 130)]),
    ],
)
def test_split_batches(total: int, size: int, expected: list[tuple[int, int]]) -> None:
    chunks = split_batches(total, size)
    assert [(c.start, c.stop) for c in chunks] == expected
    assert sum(c.stop - c.start for c in chunks) == total
    assert all(c.stop - c.start <= size for c in chunks)


def test_split_batches_rejects_nonsense() -> None:
    with pytest.raises(InvalidInputError):
        split_batches(10, 0)
    with pytest.raises(InvalidInputError):
        split_batches(-1, 4)


def test_split_then_merge_restores_the_batch() -> None:
    x = np.arange(33 * 2, dtype=np.float32).reshape(33, 2)
    labels = np.array([[str(i).encode()] for i in range(33)], dtype=object)
    parts = [{"Y": x[c] * 2, "L": labels[c]} for c in split_batches(33, 8)]
    merged = merge_batches(parts)
    np.testing.assert_array_equal(merged["Y"], x * 2)
    assert merged["L"].dtype == np.object_
    assert list(merged["L"][:, 0]) == [str(i).encode() for i in range(33)]
    assert merge_batches([]) == {}


def test_merge_refuses_chunks_with_different_tails() -> None:
    with pytest.raises(InvalidInputError, match="non-batch shapes"):
        merge_batches([{"Y": np.zeros((2, 3))}, {"Y": np.zeros((2, 4))}])


def test_batch_size_of() -> None:
    assert batch_size_of({"a": np.zeros((5, 2)), "b": np.zeros((5,))}) == 5
    with pytest.raises(InvalidInputError, match="disagree"):
        batch_size_of({"a": np.zeros((5, 2)), "b": np.zeros((4, 2))})


# -- inputs ---------------------------------------------------------------------------------


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


# -- shared memory layout -------------------------------------------------------------------


def test_input_region_layout() -> None:
    arrays = prepare_inputs(
        {
            "X": np.ones((2, 3), dtype=np.float32),
            "IMAGE": np.array([[b"ab"], [b"cde"]], dtype=object),
        }
    )
    layout, payloads = plan_input_region(arrays)
    assert [(s.name, s.offset, s.byte_size, s.datatype, s.shape) for s in layout.slots] == [
        ("X", 0, 24, "FP32", (2, 3)),
        ("IMAGE", 24, 4 + 2 + 4 + 3, "BYTES", (2, 1)),
    ]
    assert layout.byte_size == 24 + 13
    assert layout.key == "/" + layout.region
    assert payloads[1].item() == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 3) + b"cde"
    other, _ = plan_input_region(arrays)
    assert other.region != layout.region  # unique per call


def test_input_region_needs_data() -> None:
    with pytest.raises(InvalidInputError):
        plan_input_region(prepare_inputs({"X": np.zeros((0, 3), dtype=np.float32)}))


METADATA = ModelMetadata(
    name="m",
    versions=("1",),
    platform="onnxruntime_onnx",
    inputs=(TensorMetadata(name="X", datatype="FP32", shape=(-1, 3)),),
    outputs=(
        TensorMetadata(name="Y", datatype="FP32", shape=(-1, 3)),
        TensorMetadata(name="IDX", datatype="INT64", shape=(-1, 2)),
        TensorMetadata(name="LABELS", datatype="BYTES", shape=(-1, 3)),
        TensorMetadata(name="VAR", datatype="FP32", shape=(-1, -1)),
    ),
)


def test_output_region_layout_for_fixed_outputs() -> None:
    layout = plan_output_region(METADATA, ["Y", "IDX"], batch=5)
    assert layout is not None
    assert [(s.name, s.offset, s.byte_size, s.shape) for s in layout.slots] == [
        ("Y", 0, 5 * 3 * 4, (5, 3)),
        ("IDX", 60, 5 * 2 * 8, (5, 2)),
    ]
    assert layout.byte_size == 140


@pytest.mark.parametrize("names", [["Y", "LABELS"], ["VAR"], ["MISSING"]])
def test_output_region_falls_back_when_sizes_are_unknown(names: list[str]) -> None:
    assert plan_output_region(METADATA, names, batch=2) is None


def test_shm_request_points_into_the_regions() -> None:
    arrays = prepare_inputs({"X": np.ones((2, 3), dtype=np.float32)})
    in_layout, _ = plan_input_region(arrays)
    out_layout = plan_output_region(METADATA, ["Y"], batch=2)
    inputs, outputs = build_shm_request(Protocol.HTTP, in_layout, out_layout, ["Y"])
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs
    )
    header = json.loads(body[:json_size])
    assert header["inputs"][0]["parameters"] == {
        "shared_memory_region": in_layout.region,
        "shared_memory_byte_size": 24,
    }
    assert out_layout is not None
    assert header["outputs"][0]["parameters"]["shared_memory_region"] == out_layout.region
    assert json_size is None  # a pure JSON body: no tensor data travels with it


SHM_AVAILABLE = importlib.util.find_spec("pkg_resources") is not None


@pytest.mark.skipif(not SHM_AVAILABLE, reason="tritonclient's shared_memory needs pkg_resources")
def test_region_set_writes_and_destroys_a_real_region() -> None:
    shm = shared_memory_module()
    arrays = prepare_inputs({"X": np.arange(6, dtype=np.float32).reshape(2, 3)})
    layout, payloads = plan_input_region(arrays)
    regions = RegionSet(context="test")
    handle = regions.create(layout, payloads)
    read_back = shm.get_contents_as_numpy(handle, np.float32, [2, 3], offset=0)
    np.testing.assert_array_equal(read_back, arrays["X"])
    regions.destroy_all()
    assert layout.key not in shm.mapped_shared_memory_regions()


@pytest.mark.skipif(SHM_AVAILABLE, reason="pkg_resources is installed here")
def test_missing_shared_memory_support_is_a_client_error() -> None:
    with pytest.raises(SharedMemoryError, match="pkg_resources"):
        shared_memory_module()


# -- connection behaviour against real sockets ----------------------------------------------


def test_grpc_channel_args_raise_the_message_limit() -> None:
    client = connect("grpc://127.0.0.1:1", max_message_mb=64)
    args = dict(grpc_channel_args(client.options))
    assert args["grpc.max_send_message_length"] == 64 * 1024 * 1024
    assert args["grpc.max_receive_message_length"] == 64 * 1024 * 1024
    client.close()


def test_connect_rejects_bad_urls_before_any_io() -> None:
    with pytest.raises(InvalidURLError, match="http://host:port or grpc://host:port"):
        connect("tcp://127.0.0.1:8000")


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_refused_connection_is_retried_then_unavailable(
    scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{scheme}://127.0.0.1:{closed_port()}"
    caplog.set_level(logging.WARNING, logger="clients.options")
    with connect(url, timeout_s=2, retries=2, backoff_s=0.01) as client:
        assert client.url == url
        with pytest.raises(ServerUnavailableError) as info:
            client.is_live()
    assert url in str(info.value)
    assert "refused" in str(info.value).lower()
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert [r.getMessage().split("(retry ")[1][:3] for r in retries] == ["1/2", "2/2"]


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_silent_server_times_out_after_timeout_s(scheme: str, silent_port: int) -> None:
    client = connect(f"{scheme}://127.0.0.1:{silent_port}", timeout_s=0.3, retries=3)
    started = time.monotonic()
    with pytest.raises(ClientTimeoutError):
        client.is_ready()
    elapsed = time.monotonic() - started
    assert 0.2 < elapsed < 2.0  # one attempt: timeouts are not retried
    client.close()


def test_wait_until_ready_names_what_was_not_ready() -> None:
    client = connect(f"grpc://127.0.0.1:{closed_port()}", timeout_s=0.5, retries=0)
    started = time.monotonic()
    with pytest.raises(ClientTimeoutError) as info:
        client.wait_until_ready(models=["digits"], timeout_s=0.4, poll_interval_s=0.05)
    assert 0.35 < time.monotonic() - started < 3.0
    message = str(info.value)
    assert "not ready after 0.4s" in message
    assert "server not ready" in message
    assert "ServerUnavailable" not in message and "refused" in message.lower()
    client.close()


def test_infer_validates_inputs_before_any_io() -> None:
    client = connect(f"http://127.0.0.1:{closed_port()}", retries=0)
    with pytest.raises(InvalidInputError):
        client.infer("m", {"X": np.float32(3.0)})  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError, match="disagree"):
        client.infer_batched("m", {"a": np.zeros((2, 1)), "b": np.zeros((3, 1))}, max_batch_size=1)
    client.close()
    client.close()  # closing twice is harmless


def test_client_is_constructible_from_an_endpoint() -> None:
    from clients.options import Endpoint

    client = TritonClient(Endpoint(protocol=Protocol.HTTP, host="127.0.0.1", port=closed_port()))
    assert client.options.timeout_s == 60.0
    client.close()


def test_a_closed_client_refuses_calls() -> None:
    client = connect(f"grpc://127.0.0.1:{closed_port()}")
    client.close()
    with pytest.raises(ClientError, match="closed"):
        client.is_live()
