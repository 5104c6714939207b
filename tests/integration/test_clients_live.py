"""The typed client (clients/tritonkit_client/) against the real server of the session fixture.

Both protocols, sync (`connect`) and asyncio (`connect_async`), through the `digits` ensemble:
one request of max_batch_size images, inputs larger than max_batch_size (split by the
client), many concurrent small requests, and health, readiness and metadata. Every served
answer is compared with the in-process reference (`ReferencePipeline`) on the same images: the
top-k of Triton's classification extension (`classify`) with the reference's probabilities
sorted descending and named by the repository's labels file.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from tritonkit_client import (
    Classification,
    InvalidInputError,
    ModelState,
    ModelUnavailableError,
    classify,
    classify_async,
    connect,
    connect_async,
)
from tritonkit_client.tasks import images_tensor

from examples.model_zoo.digits import encoded_split
from tritonkit.build.reference_runner import ReferencePipeline
from tritonkit.server.local_triton import ServerURLs
from tritonkit.spec import load_spec

pytestmark = pytest.mark.integration

PIPELINE = "digits"
CLASSIFIER = "digits_classifier"
MAX_BATCH_SIZE = 64
OVER_MAX_BATCH = 200  # 64 + 64 + 64 + 8: the client must split it
SUBSET = OVER_MAX_BATCH
TOP_K = 3
CONCURRENT_REQUESTS = 32
REQUEST_SIZES = (1, 2, 3, 4)
SCORE_ATOL = 1e-5
TOP3_SCORE_ATOL = 1e-6  # Triton prints scores with 6 decimals ("%f")
CLASSES = 10
FEW_IMAGES = (0, 2, 15, 37, 101, 150, 199)  # rows 2 and 15: the model's top-1 is wrong
READY_TIMEOUT_S = 10.0
EXPECTED_MODELS = frozenset(load_spec(Path(__file__).resolve().parents[2] / "models.yaml").names)


@dataclass(frozen=True, kw_only=True)
class Expected:
    """The in-process pipeline's top TOP_K classes, one row per image, best first."""

    labels: np.ndarray  # [N, K] str
    scores: np.ndarray  # [N, K] float32
    indices: np.ndarray  # [N, K] int64


@dataclass(frozen=True, kw_only=True)
class Slice:
    """A request of `count` images starting at row `start` of the subset."""

    start: int
    count: int

    @property
    def rows(self) -> range:
        return range(self.start, self.start + self.count)


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    blobs, _ = encoded_split("test")
    return blobs[:SUBSET]



@pytest.fixture(scope="module")
def probabilities(example_repository: Path, images: list[bytes]) -> np.ndarray:
    """The in-process pipeline's PROBABILITIES, float32 [N, CLASSES]."""
    outputs = ReferencePipeline(example_repository, PIPELINE)(
        {"IMAGE": np.array(images, dtype=object).reshape(-1, 1)}
    )
    assert set(outputs) == {"PROBABILITIES"}
    probabilities = np.asarray(outputs["PROBABILITIES"])
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (len(images), CLASSES)
    return probabilities


def top_k_of(probabilities: np.ndarray, digits_labels: Sequence[str], k: int) -> Expected:
    """The k largest probabilities per row, largest first, with their indices and labels."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return Expected(
        labels=np.array([[digits_labels[i] for i in row] for row in order], dtype=str),
        scores=np.take_along_axis(probabilities, order, axis=1),
        indices=order.astype(np.int64),
    )


@pytest.fixture(scope="module")
def expected(probabilities: np.ndarray, digits_labels: list[str]) -> Expected:
    return top_k_of(probabilities, digits_labels, TOP_K)


@pytest.fixture(params=["http", "grpc"])
def url(request: pytest.FixtureRequest, triton: ServerURLs) -> str:
    return str(getattr(triton, request.param))


def assert_matches_reference(
    results: Sequence[Sequence[Classification]], expected: Expected, rows: Sequence[int]
) -> None:
    """Identical labels and class indices (in order), scores within SCORE_ATOL."""
    assert len(results) == len(rows)
    for result in results:
        assert len(result) == TOP_K
    labels = np.array([[c.label for c in result] for result in results], dtype=str)
    indices = np.array([[c.index for c in result] for result in results], dtype=np.int64)
    scores = np.array([[c.score for c in result] for result in results], dtype=np.float32)
    picked = list(rows)
    np.testing.assert_array_equal(labels, expected.labels[picked])
    np.testing.assert_array_equal(indices, expected.indices[picked])
    np.testing.assert_allclose(scores, expected.scores[picked], rtol=0, atol=SCORE_ATOL)


def request_slices() -> list[Slice]:
    """CONCURRENT_REQUESTS requests of 1-4 images over consecutive rows of the subset."""
    slices, start = [], 0
    for count in itertools.islice(itertools.cycle(REQUEST_SIZES), CONCURRENT_REQUESTS):
        slices.append(Slice(start=start, count=count))
        start += count
    assert start <= SUBSET
    return slices


# --------------------------------------------------------------------------- batches


def test_one_request_of_max_batch_size(url: str, images: list[bytes], expected: Expected) -> None:
    with connect(url) as client:
        assert client.max_batch_size(PIPELINE) == MAX_BATCH_SIZE
        results = classify(client, PIPELINE, images[:MAX_BATCH_SIZE], top_k=TOP_K)
    assert_matches_reference(results, expected, range(MAX_BATCH_SIZE))


def test_input_above_max_batch_size_is_split(
    url: str, images: list[bytes], expected: Expected
) -> None:
    tensor = {"IMAGE": images_tensor(images[:OVER_MAX_BATCH])}
    with connect(url) as client:
        # One request of 200 is refused by the server: the split below is needed.
        with pytest.raises(InvalidInputError, match="batch-size must be <= 64"):
            client.infer(PIPELINE, tensor)
        results = classify(client, PIPELINE, images[:OVER_MAX_BATCH], top_k=TOP_K)
        top1 = classify(client, PIPELINE, images[:OVER_MAX_BATCH], top_k=1)
    assert_matches_reference(results, expected, range(OVER_MAX_BATCH))
    assert [r[0] for r in results] == [r[0] for r in top1]
    assert all(len(r) == 1 for r in top1)


def test_classify_top3_equals_sorted_reference_probabilities(
    url: str, images: list[bytes], probabilities: np.ndarray, digits_labels: list[str]
) -> None:
    """classify() ranks on the server (classification extension): its top 3 are the
    reference's probabilities sorted descending, named by the repository's labels file."""
    rows = list(FEW_IMAGES)
    with connect(url) as client:
        results = classify(client, PIPELINE, [images[r] for r in rows], top_k=3)
    assert len(results) == len(rows)
    for row, result in zip(rows, results, strict=True):
        order = np.argsort(-probabilities[row], kind="stable")[:3]
        assert [c.index for c in result] == [int(i) for i in order], row
        assert [c.label for c in result] == [digits_labels[i] for i in order], row
        np.testing.assert_allclose(
            [c.score for c in result], probabilities[row][order], rtol=0, atol=TOP3_SCORE_ATOL
        )
        assert [c.score for c in result] == sorted((c.score for c in result), reverse=True)
    # The labels file names the digits "0".."9": the label is the class index written out.
    assert all(c.label == str(c.index) for result in results for c in result)


def test_async_batches(url: str, images: list[bytes], expected: Expected) -> None:
    async def run() -> tuple[list[list[Classification]], list[list[Classification]]]:
        async with connect_async(url) as client:
            assert await client.max_batch_size(PIPELINE) == MAX_BATCH_SIZE
            one = await classify_async(client, PIPELINE, images[:MAX_BATCH_SIZE], top_k=TOP_K)
            with pytest.raises(InvalidInputError, match="batch-size must be <= 64"):
                await client.infer(PIPELINE, {"IMAGE": images_tensor(images[:OVER_MAX_BATCH])})
            split = await classify_async(
                client, PIPELINE, images[:OVER_MAX_BATCH], top_k=TOP_K, concurrency=4
            )
            return one, split

    one, split = asyncio.run(run())
    assert_matches_reference(one, expected, range(MAX_BATCH_SIZE))
    assert_matches_reference(split, expected, range(OVER_MAX_BATCH))


# --------------------------------------------------------------------------- concurrency


def test_concurrent_sync_requests_from_threads(
    url: str, images: list[bytes], expected: Expected
) -> None:
    """A TritonClient is for one thread at a time: each request opens its own."""
    slices = request_slices()

    def one(part: Slice) -> list[list[Classification]]:
        with connect(url) as client:
            return classify(
                client, PIPELINE, images[part.start : part.start + part.count], top_k=TOP_K
            )

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, slices))
    assert len(answers) == CONCURRENT_REQUESTS
    for part, answer in zip(slices, answers, strict=True):
        assert_matches_reference(answer, expected, part.rows)


def test_concurrent_async_requests(url: str, images: list[bytes], expected: Expected) -> None:
    slices = request_slices()

    async def run() -> list[list[list[Classification]]]:
        async with connect_async(url) as client:
            return list(
                await asyncio.gather(
                    *(
                        classify_async(
                            client, PIPELINE, images[p.start : p.start + p.count], top_k=TOP_K
                        )
                        for p in slices
                    )
                )
            )

    answers = asyncio.run(run())
    assert len(answers) == CONCURRENT_REQUESTS
    for part, answer in zip(slices, answers, strict=True):
        assert_matches_reference(answer, expected, part.rows)


# --------------------------------------------------------------------------- health, metadata


def test_health_and_readiness(url: str) -> None:
    with connect(url) as client:
        assert client.is_live()
        assert client.is_ready()
        client.wait_until_ready(models=[PIPELINE], timeout_s=READY_TIMEOUT_S)
        assert client.is_model_ready(PIPELINE)
        assert not client.is_model_ready("no_such_model")
        report = client.health(models=[PIPELINE, CLASSIFIER])
    assert report.ok, report
    assert report.url == url
    assert [m.name for m in report.models] == [PIPELINE, CLASSIFIER]


def test_async_health_and_readiness(url: str) -> None:
    async def run() -> None:
        async with connect_async(url) as client:
            assert await client.is_live()
            assert await client.is_ready()
            await client.wait_until_ready(models=[PIPELINE], timeout_s=READY_TIMEOUT_S)
            report = await client.health(models=[PIPELINE])
            assert report.ok, report

    asyncio.run(run())


def test_every_model_is_listed_ready(url: str, example_repository: Path) -> None:
    with connect(url) as client:
        statuses = client.list_models()
    in_repository = {p.name for p in example_repository.iterdir() if (p / "config.pbtxt").is_file()}
    assert in_repository == EXPECTED_MODELS
    assert {s.name for s in statuses} == EXPECTED_MODELS
    assert len(statuses) == len(EXPECTED_MODELS)
    for status in statuses:
        assert status.state is ModelState.READY, status
        assert status.ready
        assert status.version == "1"


def test_pipeline_metadata_and_configs(url: str) -> None:
    with connect(url) as client:
        metadata = client.model_metadata(PIPELINE)
        classifier_config = client.model_config(CLASSIFIER)
        pipeline_config = client.model_config(PIPELINE)
    assert metadata.name == PIPELINE
    assert metadata.platform == "ensemble"
    assert [(t.name, t.datatype, t.shape) for t in metadata.inputs] == [("IMAGE", "BYTES", (-1, 1))]
    assert [(t.name, t.datatype, t.shape) for t in metadata.outputs] == [
        ("PROBABILITIES", "FP32", (-1, CLASSES)),
    ]
    assert metadata.output("PROBABILITIES") is not None
    assert classifier_config.max_batch_size == MAX_BATCH_SIZE
    assert classifier_config.name == CLASSIFIER
    assert pipeline_config.max_batch_size == MAX_BATCH_SIZE
    assert pipeline_config.platform == "ensemble"
    assert [s.model_name for s in pipeline_config.ensemble_scheduling.step] == [
        "digits_preprocess",
        CLASSIFIER,
    ]
    # The output the classification extension ranks carries the labels file.
    assert [(o.name, o.label_filename) for o in pipeline_config.output] == [
        ("PROBABILITIES", "labels.txt")
    ]


def test_async_metadata_and_configs(url: str) -> None:
    async def run() -> None:
        async with connect_async(url) as client:
            statuses = await client.list_models()
            assert {s.name for s in statuses if s.ready} == EXPECTED_MODELS
            metadata = await client.model_metadata(PIPELINE)
            assert [t.name for t in metadata.inputs] == ["IMAGE"]
            assert [t.name for t in metadata.outputs] == ["PROBABILITIES"]
            config = await client.model_config(CLASSIFIER)
            assert config.max_batch_size == MAX_BATCH_SIZE

    asyncio.run(run())


def test_unknown_model_is_unavailable(url: str, images: list[bytes]) -> None:
    with connect(url) as client, pytest.raises(ModelUnavailableError, match="no_such_model"):
        client.infer("no_such_model", {"IMAGE": images_tensor(images[:1])})
