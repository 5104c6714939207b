"""The FastAPI peer and the in-process limit on the example repository's digits pipeline.

The peer (2 uvicorn workers) takes the same KServe binary bodies Triton takes, answers like the
in-process reference (the top classes of PROBABILITIES as Triton's classification extension
writes them, or the probabilities themselves when no class count is asked for), refuses a
corrupt image with HTTP 400 and stays up, and leaves no process behind when it stops. The
in-process limit measures a positive throughput.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import numpy as np
import pytest
from tritonkit_client.kserve_codec import (
    HEADER_LENGTH,
    classification_strings,
    decode_error,
    decode_response,
    encode_request,
    request_headers,
)
from tritonkit_client.tasks import parse_classifications

from examples.model_zoo.digits import encoded_split
from harness.benchmarks.fastapi_peer import PeerServer, group_members, live_processes, serve_peer
from harness.benchmarks.inprocess_limit import image_batch, measure_inprocess_limit
from harness.benchmarks.workloads import CLASS_COUNTS, CLASSIFICATION_OUTPUTS
from tritonkit.build.reference_runner import ReferencePipeline

pytestmark = pytest.mark.integration

PIPELINE = "digits"
OUTPUT = "PROBABILITIES"
OUTPUTS = list(CLASSIFICATION_OUTPUTS)  # what the benchmark runner asks for
TOP_K = CLASS_COUNTS[OUTPUT]
CLASSES = 10
CORRUPT_PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
TIMEOUT_S = 30.0


@dataclass(frozen=True, kw_only=True)
class Answer:
    status: int
    headers: Message
    body: bytes


def call(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
    request = urllib.request.Request(url, data=body, headers=headers or {},
                                     method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return Answer(status=response.status, headers=response.headers, body=response.read())
    except urllib.error.HTTPError as e:
        return Answer(status=e.code, headers=e.headers, body=e.read())


def infer(server: PeerServer, images: list[bytes], outputs: list[str] = OUTPUTS,
          *, binary_outputs: bool = True,
          class_counts: dict[str, int] | None = CLASS_COUNTS) -> Answer:
    body, header_length = encode_request({"IMAGE": image_batch(images)}, outputs,
                                         binary_outputs=binary_outputs,
                                         class_counts=class_counts)
    return call(server.infer_url, body, request_headers(header_length))


def labels_of(repository: Path) -> list[str]:
    return (repository / PIPELINE / "labels.txt").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def samples() -> list[bytes]:
    images, _ = encoded_split("test")
    return [images[i] for i in np.linspace(0, len(images) - 1, 24).astype(int)]


@pytest.fixture(scope="module")
def peer(example_repository: Path) -> Iterator[PeerServer]:
    with serve_peer(example_repository, PIPELINE, workers=2, startup_timeout_s=120) as server:
        yield server
    own = (server.pid, *server.worker_pids)
    assert not live_processes(own), f"peer processes outlived serve_peer: {own}"
    assert not group_members(server.pid), "processes of the peer's group outlived serve_peer"


def test_peer_runs_two_workers_with_one_ort_thread_each(peer: PeerServer) -> None:
    assert peer.workers == 2
    assert len(set(peer.worker_pids)) == 2
    assert peer.pid not in peer.worker_pids
    assert peer.ort_threads >= 1
    assert call(peer.ready_url).status == 200
    assert call(f"{peer.url}/v2/health/live").status == 200


@pytest.mark.parametrize("batch", [1, 16])
def test_peer_answers_like_the_reference(peer: PeerServer, example_repository: Path,
                                         samples: list[bytes], batch: int) -> None:
    reference = ReferencePipeline(example_repository, PIPELINE)
    labels = labels_of(example_repository)
    assert len(labels) == CLASSES
    for start in range(0, len(samples), batch):
        images = samples[start:start + batch]
        expected = reference({"IMAGE": image_batch(images)})[OUTPUT]
        # the top classes, as Triton's classification extension answers them
        answer = infer(peer, images)
        assert answer.status == 200, answer.body
        length = answer.headers.get(HEADER_LENGTH)
        assert length is not None
        response = decode_response(answer.body, int(length))
        assert response.model_name == PIPELINE
        assert list(response.outputs) == OUTPUTS
        top = response.outputs[OUTPUT]
        assert top.shape == (len(images), TOP_K)
        assert top.tolist() == classification_strings(expected, TOP_K, labels).tolist()
        order = np.argsort(-expected, axis=1, kind="stable")[:, :TOP_K]
        parsed = parse_classifications(top)
        assert [[c.index for c in row] for row in parsed] == order.tolist()
        assert [[c.label for c in row] for row in parsed] == [[labels[i] for i in row]
                                                              for row in order]
        np.testing.assert_allclose([[c.score for c in row] for row in parsed],
                                   np.take_along_axis(expected, order, axis=1), atol=1e-5)
        # the probabilities themselves when no class count is asked for
        answer = infer(peer, images, class_counts=None)
        assert answer.status == 200, answer.body
        raw = decode_response(answer.body, int(answer.headers[HEADER_LENGTH])).outputs[OUTPUT]
        assert raw.dtype == np.float32 and raw.shape == (len(images), CLASSES)
        np.testing.assert_allclose(raw, expected, atol=1e-5)


def test_peer_labels_are_mostly_right(peer: PeerServer) -> None:
    images, labels = encoded_split("test")
    answer = infer(peer, images[:64], class_counts={OUTPUT: 1})
    assert answer.status == 200, answer.body
    response = decode_response(answer.body, int(answer.headers[HEADER_LENGTH]))
    assert response.outputs[OUTPUT].shape == (64, 1)
    top1 = np.array([row[0].index for row in parse_classifications(response.outputs[OUTPUT])])
    assert float(np.mean(top1 == labels[:64])) > 0.9


def test_json_outputs_when_asked(peer: PeerServer, samples: list[bytes]) -> None:
    answer = infer(peer, samples[:2], binary_outputs=False)
    assert answer.status == 200, answer.body
    assert answer.headers.get(HEADER_LENGTH) is None
    outputs = json.loads(answer.body)["outputs"]
    assert [o["name"] for o in outputs] == [OUTPUT]
    assert outputs[0]["datatype"] == "BYTES" and outputs[0]["shape"] == [2, TOP_K]
    assert len(outputs[0]["data"]) == 2 * TOP_K
    assert decode_response(answer.body, None).outputs[OUTPUT].shape == (2, TOP_K)


def test_corrupt_image_is_a_400_and_the_peer_stays_up(peer: PeerServer,
                                                      samples: list[bytes]) -> None:
    for _ in range(peer.workers * 2):  # reach every worker
        answer = infer(peer, [samples[0], CORRUPT_PNG])
        assert answer.status == 400
        message = decode_error(answer.body)
        assert "digits" in message
        assert "row 1" in message
        assert "PNG" in message
    assert call(peer.ready_url).status == 200
    assert infer(peer, samples[:1]).status == 200


@pytest.mark.parametrize(("images", "outputs", "status", "problem"), [
    ([], OUTPUTS, 400, "batch size must be 1..64"),
    ([b"x"] * 65, OUTPUTS, 400, "batch size must be 1..64"),
    ([b"x"], ["NOPE"], 400, "unexpected inference output"),
])
def test_bad_requests_are_refused(peer: PeerServer, images: list[bytes], outputs: list[str],
                                  status: int, problem: str) -> None:
    answer = infer(peer, images, outputs)
    assert answer.status == status
    assert problem in decode_error(answer.body)


def test_malformed_body_and_unknown_model(peer: PeerServer, samples: list[bytes]) -> None:
    body, length = encode_request({"IMAGE": image_batch(samples[:1])}, OUTPUTS)
    truncated = call(peer.infer_url, body[:-3], request_headers(length))
    assert truncated.status == 400
    assert "overruns the body" in decode_error(truncated.body)
    other = call(f"{peer.url}/v2/models/resnet9/infer", body, request_headers(length))
    assert other.status == 404
    assert "resnet9" in decode_error(other.body)


def test_inprocess_limit_smoke(example_repository: Path, samples: list[bytes]) -> None:
    result = measure_inprocess_limit(example_repository, PIPELINE, samples,
                                     batch_sizes=(1, 16), processes=2, duration_s=0.3)
    assert [p.batch_size for p in result.points] == [1, 16]
    assert result.images_per_s > 0
    assert all(p.images > 0 for p in result.points)
