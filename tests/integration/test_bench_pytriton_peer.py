"""The PyTriton peer on the example repository's digits pipeline.

It serves the pipeline under its own name on PyTriton's tritonserver, answers the byte-identical
KServe body the benchmark sends to Triton and the FastAPI peer, gives the in-process reference's
top class (the classification extension without labels: "score:index"), refuses a corrupt image
with an error naming it and stays up, and leaves no process behind when it stops.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException
from tritonkit_client.kserve_codec import (
    HEADER_LENGTH,
    decode_response,
    encode_request,
    request_headers,
)
from tritonkit_client.tasks import parse_classifications

from examples.model_zoo.digits import encoded_split
from harness.benchmarks.inprocess_limit import image_batch
from harness.benchmarks.peer_process import group_members
from harness.benchmarks.pytriton_peer import (
    PyTritonServer,
    _model_dirs_of,
    marked_processes,
    serve_pytriton,
)
from harness.benchmarks.workloads import CLASS_COUNTS, CLASSIFICATION_OUTPUTS
from tritonkit.build.reference_runner import ReferencePipeline

pytestmark = pytest.mark.integration

PIPELINE = "digits"
OUTPUT = "PROBABILITIES"
TOP_K = CLASS_COUNTS[OUTPUT]
CORRUPT_PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40


@pytest.fixture(scope="module")
def samples() -> list[bytes]:
    images, _ = encoded_split("test")
    return [images[i] for i in np.linspace(0, len(images) - 1, 8).astype(int)]


@pytest.fixture(scope="module")
def peer(example_repository: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[PyTritonServer]:
    log_path = tmp_path_factory.mktemp("pytriton-peer") / "pytriton.log"
    with serve_pytriton(example_repository, [PIPELINE], instances=2, startup_timeout_s=120,
                        log_path=log_path) as server:
        yield server
        model_dirs = _model_dirs_of(group_members(server.pid))
        assert model_dirs, "no stub names the model directory tritonserver made"
    assert not group_members(server.pid), "processes of the peer's group outlived it"
    assert not marked_processes(server.marker), "tritonserver or its stubs outlived the peer"
    assert not [d for d in model_dirs if d.exists()], "tritonserver's model directory was left"


@pytest.fixture(scope="module")
def client(peer: PyTritonServer) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(peer.http_hostport) as http:
        yield http


def infer(client: httpclient.InferenceServerClient, images: list[bytes]) -> np.ndarray:
    tensor = httpclient.InferInput("IMAGE", [len(images), 1], "BYTES")
    tensor.set_data_from_numpy(image_batch(images))
    wanted = httpclient.InferRequestedOutput(OUTPUT, class_count=TOP_K)
    answer = client.infer(PIPELINE, [tensor], outputs=[wanted])
    top: np.ndarray = answer.as_numpy(OUTPUT)
    return top


def test_serves_the_pipeline_under_its_name_with_two_instances(
        peer: PyTritonServer, client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_ready() and client.is_model_ready(PIPELINE)
    config = client.get_model_config(PIPELINE)
    assert config["max_batch_size"] == 64
    assert [i["name"] for i in config["input"]] == ["IMAGE"]
    assert config["input"][0]["data_type"] == "TYPE_STRING"
    assert [o["name"] for o in config["output"]] == [OUTPUT]
    assert sum(g["count"] for g in config["instance_group"]) == peer.instances == 2
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 200


def test_top1_equals_the_inprocess_reference(example_repository: Path,
                                             client: httpclient.InferenceServerClient,
                                             samples: list[bytes]) -> None:
    expected = ReferencePipeline(example_repository, PIPELINE)(
        {"IMAGE": image_batch(samples)})[OUTPUT]
    top = infer(client, samples)
    assert top.shape == (len(samples), TOP_K)
    rows = parse_classifications(top)
    assert [row[0].index for row in rows] == np.argmax(expected, axis=1).tolist()
    np.testing.assert_allclose([row[0].score for row in rows], expected.max(axis=1), atol=1e-5)
    # PyTriton attaches no label file: "score:index" (our Triton answers "score:index:label")
    assert all(entry.count(b":") == 1 for entry in top.ravel())


def test_takes_the_benchmarks_byte_identical_body(peer: PyTritonServer,
                                                  samples: list[bytes]) -> None:
    counts = {name: k for name, k in CLASS_COUNTS.items() if name in CLASSIFICATION_OUTPUTS}
    body, length = encode_request({"IMAGE": image_batch(samples[:1])}, CLASSIFICATION_OUTPUTS,
                                  class_counts=counts)
    request = urllib.request.Request(peer.infer_url(PIPELINE), data=body,
                                     headers=request_headers(length), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        decoded = decode_response(response.read(), int(response.headers[HEADER_LENGTH]))
    assert decoded.outputs[OUTPUT].shape == (1, TOP_K)


def test_corrupt_image_names_the_problem_and_the_peer_stays_up(
        peer: PyTritonServer, client: httpclient.InferenceServerClient,
        samples: list[bytes]) -> None:
    for _ in range(peer.instances * 2):  # reach every instance
        with pytest.raises(InferenceServerException) as caught:
            infer(client, [CORRUPT_PNG])
        message = str(caught.value)
        assert str(caught.value.status()) == "500"  # PyTriton: every callable error is a 500
        assert "in ensemble 'digits'" in message
        assert "row 0: PNG header is truncated or corrupt" in message
    assert infer(client, samples[:1]).shape == (1, TOP_K)
    try:
        with urllib.request.urlopen(peer.ready_url, timeout=10) as response:
            assert response.status == 200
    except urllib.error.HTTPError as e:  # pragma: no cover - the failure message
        pytest.fail(f"the peer is not ready after a bad request: {e}")
