"""The digits example served by the real local Triton equals the in-process reference.

- the full test split (540 images) over HTTP and gRPC, sync and asyncio: PROBABILITIES within
  1e-6 of `ReferencePipeline`; the top 3 of Triton's classification extension (class_count)
  with the labels and class indices of `classification_strings` on the reference's
  probabilities and the repository's labels file, scores within 1e-5; accuracy >= 0.97 and
  equal to the in-process accuracy;
- a corrupt image among concurrent valid requests fails alone with InvalidInputError; a
  request mixing valid and corrupt rows fails as a whole; the server stays live and ready;
- the core model served directly equals ONNX Runtime on the same model file, and the fp16
  and int8 variants agree with it on top-1;
- a server started here (one extra start) leaves no process behind.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from tritonkit_client import (
    Classification,
    InvalidInputError,
    classify,
    classify_async,
    connect,
    connect_async,
)
from tritonkit_client.kserve_codec import classification_strings
from tritonkit_client.tasks import images_tensor, parse_classifications

from examples.model_zoo.digits import (
    INPUT_NAME,
    MIN_TEST_ACCURACY,
    OUTPUT_NAME,
    encoded_split,
    preprocess,
)
from tritonkit.build.reference_runner import ReferencePipeline
from tritonkit.server.local_triton import LocalTriton, ServerURLs, find_orphans

pytestmark = pytest.mark.integration

PIPELINE = "digits"
CLASSIFIER = "digits_classifier"
OUTPUT = "PROBABILITIES"
OUTPUTS = (OUTPUT,)
CLASSES = 10
TOP_K = 3
FULL_SPLIT_SIZE = 540
SUBSET = 120
PROBABILITY_ATOL = 1e-6
SCORE_ATOL = 1e-5
CLASSIFIER_ATOL = 1e-5
MIN_VARIANT_AGREEMENT = 0.98
CONCURRENT_REQUESTS = 16
BAD_REQUEST = 5  # which of the concurrent single-image requests carries the corrupt image
OTHER_REQUESTS = 8
READY_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 180.0


class Mode(str, Enum):
    SYNC = "sync"
    ASYNC = "async"


@dataclass(frozen=True, kw_only=True)
class Split:
    images: list[bytes]
    labels: np.ndarray  # int64 [N]


@pytest.fixture(scope="module")
def test_split() -> Split:
    images, labels = encoded_split("test")
    assert len(images) == FULL_SPLIT_SIZE
    return Split(images=images, labels=labels)


@pytest.fixture(scope="module")
def reference(example_repository: Path, test_split: Split) -> dict[str, np.ndarray]:
    """The ensemble's outputs on the full split, computed in-process."""
    outputs = ReferencePipeline(example_repository, PIPELINE)(
        {"IMAGE": np.array(test_split.images, dtype=object).reshape(-1, 1)}
    )
    assert set(outputs) == set(OUTPUTS)
    assert outputs[OUTPUT].dtype == np.float32
    assert outputs[OUTPUT].shape == (FULL_SPLIT_SIZE, CLASSES)
    return outputs



@pytest.fixture(scope="module")
def expected_top3(reference: dict[str, np.ndarray], digits_labels: list[str]) -> np.ndarray:
    """What the classification extension answers for the reference: BYTES [N, TOP_K]."""
    return classification_strings(reference[OUTPUT], TOP_K, digits_labels)


@pytest.fixture(scope="module")
def pixels(test_split: Split) -> np.ndarray:
    return preprocess(test_split.images)


@pytest.fixture(scope="module")
def reference_probabilities(example_repository: Path, pixels: np.ndarray) -> np.ndarray:
    """The fp32 classifier's probabilities from ONNX Runtime on the file the server loaded."""
    return onnx_outputs(example_repository / CLASSIFIER / "1" / "model.onnx", pixels)


@pytest.fixture(params=["http", "grpc"])
def url(request: pytest.FixtureRequest, triton: ServerURLs) -> str:
    return str(getattr(triton, request.param))


def onnx_outputs(path: Path, pixels: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: pixels})[0])


def truncated(image: bytes) -> bytes:
    """A PNG cut in half: the header parses, the pixel data ends early."""
    return image[: len(image) // 2]


def top1_labels(results: list[list[Classification]]) -> list[str]:
    return [result[0].label for result in results]


def assert_outputs_equal_reference(
    served: dict[str, np.ndarray], reference: dict[str, np.ndarray], rows: slice | list[int]
) -> None:
    assert set(served) == set(OUTPUTS)
    assert served[OUTPUT].dtype == np.float32
    np.testing.assert_allclose(
        served[OUTPUT], reference[OUTPUT][rows], rtol=0, atol=PROBABILITY_ATOL
    )


def assert_classes_equal_reference(served: np.ndarray, expected: np.ndarray) -> None:
    """A classification answer (BYTES [N, k] "score:index:label") against `expected` (the
    same from `classification_strings`): identical labels and class indices in order, scores
    within SCORE_ATOL."""
    assert served.shape == expected.shape
    got, want = parse_classifications(served), parse_classifications(expected)
    assert [[(c.index, c.label) for c in row] for row in got] == [
        [(c.index, c.label) for c in row] for row in want
    ]
    np.testing.assert_allclose(
        [[c.score for c in row] for row in got],
        [[c.score for c in row] for row in want],
        rtol=0,
        atol=SCORE_ATOL,
    )


# --------------------------------------------------------------------------- full split


@pytest.mark.parametrize("mode", list(Mode))
def test_full_test_split_equals_in_process_reference(
    url: str,
    mode: Mode,
    test_split: Split,
    reference: dict[str, np.ndarray],
    expected_top3: np.ndarray,
) -> None:
    tensor = {"IMAGE": images_tensor(test_split.images)}
    top3 = {OUTPUT: TOP_K}
    if mode is Mode.SYNC:
        with connect(url) as client:
            served = client.infer_batched(PIPELINE, tensor, outputs=list(OUTPUTS))
            classes = client.infer_batched(PIPELINE, tensor, outputs=[OUTPUT], class_counts=top3)
    else:

        async def run() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
            async with connect_async(url) as client:
                served = await client.infer_batched(
                    PIPELINE, tensor, outputs=list(OUTPUTS), concurrency=4
                )
                classes = await client.infer_batched(
                    PIPELINE, tensor, outputs=[OUTPUT], class_counts=top3, concurrency=4
                )
                return served, classes

        served, classes = asyncio.run(run())

    assert served[OUTPUT].shape == (FULL_SPLIT_SIZE, CLASSES)
    assert_outputs_equal_reference(served, reference, slice(None))
    assert set(classes) == {OUTPUT}
    assert classes[OUTPUT].shape == (FULL_SPLIT_SIZE, TOP_K)
    assert classes[OUTPUT].dtype == np.object_
    assert_classes_equal_reference(classes[OUTPUT], expected_top3)

    top3_rows = parse_classifications(classes[OUTPUT])
    served_top1 = np.array([row[0].index for row in top3_rows])
    np.testing.assert_array_equal(served_top1, served[OUTPUT].argmax(axis=1))
    served_accuracy = float(np.mean(served_top1 == test_split.labels))
    in_process_accuracy = float(np.mean(reference[OUTPUT].argmax(axis=1) == test_split.labels))
    assert served_accuracy >= MIN_TEST_ACCURACY
    assert served_accuracy == in_process_accuracy
    # Labels are the class names of labels.txt ("0".."9"): the top-1 label is the digit.
    top1_labels_as_digits = np.array([int(row[0].label) for row in top3_rows])
    np.testing.assert_array_equal(top1_labels_as_digits, served_top1)


# --------------------------------------------------------------------------- corrupt images


def _expected_top3(expected_top3: np.ndarray, row: int) -> list[str]:
    return [c.label for c in parse_classifications(expected_top3[row : row + 1])[0]]


def _check_lone_failure(
    answers: list[list[list[Classification]] | BaseException],
    expected_top3: np.ndarray,
) -> None:
    failures = [i for i, a in enumerate(answers) if isinstance(a, BaseException)]
    assert failures == [BAD_REQUEST], [repr(answers[i]) for i in failures]
    error = answers[BAD_REQUEST]
    assert isinstance(error, InvalidInputError), repr(error)
    message = str(error)
    assert "row 0" in message
    assert "truncated" in message
    assert PIPELINE in message
    for i, answer in enumerate(answers):
        if i == BAD_REQUEST:
            continue
        assert not isinstance(answer, BaseException)
        assert [c.label for c in answer[0]] == _expected_top3(expected_top3, i)


def _assert_still_serving(url: str, test_split: Split, reference: dict[str, np.ndarray]) -> None:
    with connect(url) as client:
        assert client.is_live()
        assert client.is_ready()
        client.wait_until_ready(models=[PIPELINE], timeout_s=READY_TIMEOUT_S)
        served = client.infer(
            PIPELINE,
            {"IMAGE": images_tensor(test_split.images[: SUBSET // 2])},
            outputs=list(OUTPUTS),
        )
    assert_outputs_equal_reference(served, reference, slice(0, SUBSET // 2))


def _single_image_requests(test_split: Split) -> list[bytes]:
    images = list(test_split.images[:CONCURRENT_REQUESTS])
    images[BAD_REQUEST] = truncated(images[BAD_REQUEST])
    return images


def test_corrupt_image_fails_alone_among_concurrent_async_requests(
    url: str, test_split: Split, reference: dict[str, np.ndarray], expected_top3: np.ndarray
) -> None:
    images = _single_image_requests(test_split)

    async def run() -> list[list[list[Classification]] | BaseException]:
        async with connect_async(url) as client:
            return list(
                await asyncio.gather(
                    *(classify_async(client, PIPELINE, [image], top_k=TOP_K) for image in images),
                    return_exceptions=True,
                )
            )

    _check_lone_failure(asyncio.run(run()), expected_top3)
    _assert_still_serving(url, test_split, reference)


def test_corrupt_image_fails_alone_among_concurrent_threads(
    url: str, test_split: Split, reference: dict[str, np.ndarray], expected_top3: np.ndarray
) -> None:
    images = _single_image_requests(test_split)

    def one(image: bytes) -> list[list[Classification]] | BaseException:
        with connect(url) as client:
            try:
                return classify(client, PIPELINE, [image], top_k=TOP_K)
            except InvalidInputError as e:
                return e

    with ThreadPoolExecutor(max_workers=CONCURRENT_REQUESTS) as pool:
        answers = list(pool.map(one, images))
    _check_lone_failure(answers, expected_top3)
    _assert_still_serving(url, test_split, reference)


def test_mixed_request_fails_as_a_whole_while_others_succeed(
    url: str, test_split: Split, reference: dict[str, np.ndarray], expected_top3: np.ndarray
) -> None:
    good = test_split.images
    mixed = [good[0], truncated(good[1]), good[2]]
    others = [(start, good[start : start + 4]) for start in range(4, 4 + 4 * OTHER_REQUESTS, 4)]
    status = "[400]" if url.startswith("http") else "INVALID_ARGUMENT"

    async def run() -> list[list[list[Classification]] | BaseException]:
        async with connect_async(url) as client:
            return list(
                await asyncio.gather(
                    classify_async(client, PIPELINE, mixed, top_k=TOP_K),
                    *(
                        classify_async(client, PIPELINE, images, top_k=TOP_K)
                        for _, images in others
                    ),
                    return_exceptions=True,
                )
            )

    mixed_answer, *other_answers = asyncio.run(run())
    assert isinstance(mixed_answer, InvalidInputError), repr(mixed_answer)
    message = str(mixed_answer)
    assert status in message
    assert "row 1" in message
    assert "truncated" in message
    assert "row 0" not in message and "row 2" not in message
    for (start, images), answer in zip(others, other_answers, strict=True):
        assert not isinstance(answer, BaseException), repr(answer)
        assert [[c.label for c in row] for row in answer] == [
            _expected_top3(expected_top3, start + i) for i in range(len(images))
        ]
    _assert_still_serving(url, test_split, reference)


def test_failed_request_keeps_every_server_process(
    triton_server: LocalTriton, url: str, test_split: Split
) -> None:
    """Per-request errors are answered, not crashes: the stub processes are still there."""
    before = find_orphans(instance_id=triton_server.instance_id)
    with connect(url) as client, pytest.raises(InvalidInputError, match="row 0"):
        classify(client, PIPELINE, [truncated(test_split.images[0])])
    after = find_orphans(instance_id=triton_server.instance_id)
    assert triton_server.is_running()
    assert after == before
    assert triton_server.pid in after


# --------------------------------------------------------------------------- models directly


def test_core_model_served_directly_equals_onnxruntime(
    url: str, pixels: np.ndarray, reference_probabilities: np.ndarray
) -> None:
    with connect(url) as client:
        served = client.infer_batched(
            CLASSIFIER, {INPUT_NAME: pixels[:SUBSET]}, outputs=[OUTPUT_NAME]
        )[OUTPUT_NAME]
    assert served.shape == (SUBSET, CLASSES)
    assert served.dtype == np.float32
    np.testing.assert_allclose(
        served, reference_probabilities[:SUBSET], rtol=0, atol=CLASSIFIER_ATOL
    )


@pytest.mark.parametrize("variant", ["digits_classifier_fp16", "digits_classifier_int8"])
def test_precision_variant_agrees_on_top1(
    url: str,
    variant: str,
    *,
    example_repository: Path,
    pixels: np.ndarray,
    reference_probabilities: np.ndarray,
    test_split: Split,
) -> None:
    with connect(url) as client:
        served = client.infer_batched(variant, {INPUT_NAME: pixels}, outputs=[OUTPUT_NAME])[
            OUTPUT_NAME
        ]
    assert served.shape == (FULL_SPLIT_SIZE, CLASSES)
    agreement = float(np.mean(served.argmax(axis=1) == reference_probabilities.argmax(axis=1)))
    assert agreement >= MIN_VARIANT_AGREEMENT, f"{variant}: top-1 agreement {agreement:.4f}"
    assert float(np.mean(served.argmax(axis=1) == test_split.labels)) >= MIN_TEST_ACCURACY
    # The served variant is the variant's own model file, not the fp32 one.
    own = onnx_outputs(example_repository / variant / "1" / "model.onnx", pixels)
    np.testing.assert_array_equal(served.argmax(axis=1), own.argmax(axis=1))
    np.testing.assert_allclose(served, own, rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- own server


def test_own_server_stops_without_orphans(
    example_repository: Path,
    test_split: Split,
    reference: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    """The one extra server start of this suite: serve, stop, and leave no process behind."""
    server = LocalTriton(
        example_repository,
        log_path=tmp_path / "own-tritonserver.log",
        startup_timeout_s=STARTUP_TIMEOUT_S,
    )
    with server as running:
        urls = running.urls
        running_pids = find_orphans(instance_id=running.instance_id)
        # The server and one stub per Python-backend model: the check below can see them.
        assert running.pid in running_pids
        assert len(running_pids) >= 2
        for url in (urls.http, urls.grpc):
            with connect(url) as client:
                served = client.infer(
                    PIPELINE,
                    {"IMAGE": images_tensor(test_split.images[:8])},
                    outputs=list(OUTPUTS),
                )
            assert_outputs_equal_reference(served, reference, slice(0, 8))
    assert not server.is_running()
    assert find_orphans(instance_id=server.instance_id) == []
