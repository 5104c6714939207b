"""System shared memory: region layouts, requests that point into them, and real regions
where tritonclient's shared_memory module can load."""

from __future__ import annotations

import importlib.util
import json
import struct

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2
from tritonkit_client._requests import infer_args
from tritonkit_client._shm import (
    RegionSet,
    ShmInference,
    build_shm_request,
    plan_input_region,
    plan_output_region,
    shared_memory_module,
)
from tritonkit_client._tensors import prepare_inputs
from tritonkit_client.errors import InvalidInputError, SharedMemoryError
from tritonkit_client.options import Protocol
from tritonkit_client.results import ModelMetadata, TensorMetadata


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


def test_shm_inference_lays_out_both_regions_and_points_the_request_into_them() -> None:
    args = infer_args(
        "m", {"X": np.ones((2, 3), np.float32)}, outputs=["Y"], version="1", parameters={"p": 1}
    )
    shm = ShmInference(
        protocol=Protocol.HTTP, args=args, metadata=METADATA, batched=True, context="test"
    )
    inputs, outputs = shm.layouts  # inputs first
    assert [s.name for s in inputs.slots] == ["X"]
    assert [(s.name, s.shape) for s in outputs.slots] == [("Y", (2, 3))]
    request = shm.request()
    assert (request.model, request.version, request.parameters) == ("m", "1", {"p": 1})
    body, _ = httpclient.InferenceServerClient.generate_request_body(
        request.inputs, outputs=request.outputs
    )
    header = json.loads(body)
    assert header["inputs"][0]["parameters"]["shared_memory_region"] == inputs.region
    assert header["outputs"][0]["parameters"]["shared_memory_region"] == outputs.region


def test_shm_inference_without_an_output_region_reads_the_response() -> None:
    args = infer_args(
        "m", {"X": np.ones((1, 3), np.float32)}, outputs=None, version="", parameters=None
    )
    shm = ShmInference(
        protocol=Protocol.GRPC, args=args, metadata=METADATA, batched=True, context="test"
    )
    assert len(shm.layouts) == 1  # LABELS is BYTES and VAR has a variable dim
    response = service_pb2.ModelInferResponse(model_name="m")
    for name, datatype in (("Y", "FP32"), ("IDX", "INT64"), ("LABELS", "BYTES"), ("VAR", "FP32")):
        response.outputs.add(name=name, datatype=datatype, shape=[0])
        response.raw_output_contents.append(b"")
    assert sorted(shm.read(grpcclient.InferResult(response))) == ["IDX", "LABELS", "VAR", "Y"]


@pytest.mark.skipif(not SHM_AVAILABLE, reason="tritonclient's shared_memory needs pkg_resources")
def test_shm_inference_reads_the_outputs_out_of_its_region() -> None:
    args = infer_args(
        "m",
        {"X": np.full((2, 3), 7, np.float32)},
        outputs=["Y", "IDX"],
        version="",
        parameters=None,
    )
    shm = ShmInference(
        protocol=Protocol.GRPC, args=args, metadata=METADATA, batched=True, context="test"
    )
    inputs, outputs = shm.layouts
    y = np.arange(6, dtype=np.float32).reshape(2, 3)
    idx = np.arange(4, dtype=np.int64).reshape(2, 2)
    try:
        for layout in shm.layouts:
            shm.create(layout)
        # The server's part, through the regions' files: read the inputs, write the outputs.
        sent = np.fromfile(f"/dev/shm{inputs.key}", dtype=np.float32, count=6)
        np.testing.assert_array_equal(sent, 7)
        with open(f"/dev/shm{outputs.key}", "r+b") as region:
            region.write(y.tobytes() + idx.tobytes())
        response = service_pb2.ModelInferResponse(model_name="m")
        response.outputs.add(name="Y", datatype="FP32", shape=[2, 3])
        response.outputs.add(name="IDX", datatype="INT64", shape=[2, 2])
        read = shm.read(grpcclient.InferResult(response))
    finally:
        shm.destroy()
    np.testing.assert_array_equal(read["Y"], y)
    np.testing.assert_array_equal(read["IDX"], idx)
    mapped = shared_memory_module().mapped_shared_memory_regions()
    assert inputs.key not in mapped and outputs.key not in mapped
