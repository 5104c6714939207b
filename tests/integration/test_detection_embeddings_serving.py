"""Detection and text embeddings served by the real local Triton, over HTTP and gRPC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tritonkit_client import InvalidInputError, connect, detect, embed

from examples.demo.detection import (
    as_image_detections,
    demo_images,
    ground_truth,
    reference_detections,
)
from examples.demo.embeddings import reference_embeddings, sentence_transformers_embeddings
from examples.model_zoo.shapes import blank_image
from tritonkit.processing.detection import mean_average_precision
from tritonkit.processing.text import cosine_similarity
from tritonkit.server.local_triton import ServerURLs
from tritonkit.spec import load_spec

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTOCOLS = ["http", "grpc"]
# Not used by the demo, the holdout, calibration or anything else in the project.
SENTENCES = [
    "The glacier retreated two kilometres in a single decade.",
    "Which bus goes to the botanical garden?",
    "A violinist tuned her instrument backstage.",
    "",
    "tokens " * 600,  # far beyond 256 tokens: truncated like sentence-transformers does
    "Ein kleiner Hund bellt den Briefträger an.",
]


def url_for(triton: ServerURLs, protocol: str) -> str:
    return triton.http if protocol == "http" else triton.grpc


@pytest.fixture(scope="module")
def shapes_images() -> tuple:
    return demo_images(48)


@pytest.fixture(scope="module")
def in_process_map(example_repository: Path, shapes_images: tuple) -> float:
    spec = load_spec(REPO_ROOT / "models.yaml")
    found = reference_detections(example_repository, spec, shapes_images)
    return mean_average_precision(found, ground_truth(shapes_images))


@pytest.fixture(scope="module")
def st_vectors() -> np.ndarray:
    return sentence_transformers_embeddings(SENTENCES)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_served_map_equals_in_process(triton: ServerURLs, protocol: str, shapes_images: tuple,
                                      in_process_map: float) -> None:
    with connect(url_for(triton, protocol), timeout_s=60) as client:
        found = detect(client, "detection", [i.png for i in shapes_images])
    served = mean_average_precision(as_image_detections(found), ground_truth(shapes_images))
    assert in_process_map >= 0.8
    assert served == pytest.approx(in_process_map, abs=1e-4)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_thresholds_from_request_parameters_and_empty_images(triton: ServerURLs,
                                                             protocol: str,
                                                             shapes_images: tuple) -> None:
    crowded = next(i for i in shapes_images if len(i.classes) >= 2)
    with connect(url_for(triton, protocol), timeout_s=60) as client:
        default, blank = detect(client, "detection", [crowded.png, blank_image()])
        strict = detect(client, "detection", [crowded.png], conf_threshold=0.99)[0]
        loose = detect(client, "detection", [crowded.png], conf_threshold=0.01,
                       iou_threshold=0.9)[0]
    assert blank == []
    assert len(strict) < len(default) <= len(loose)
    assert all(d.score >= 0.25 for d in default)
    for d in default:  # boxes are in the original image's pixels
        assert 0 <= d.box.x1 < d.box.x2 <= crowded.width
        assert 0 <= d.box.y1 < d.box.y2 <= crowded.height


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_embeddings_match_sentence_transformers(triton: ServerURLs, protocol: str,
                                                st_vectors: np.ndarray) -> None:
    with connect(url_for(triton, protocol), timeout_s=60) as client:
        vectors = embed(client, "embeddings", SENTENCES)
    assert vectors.shape == (len(SENTENCES), 384)
    assert cosine_similarity(vectors, st_vectors).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_in_process_embeddings_match_sentence_transformers(example_repository: Path,
                                                           st_vectors: np.ndarray) -> None:
    spec = load_spec(REPO_ROOT / "models.yaml")
    vectors = reference_embeddings(example_repository, spec, SENTENCES)
    assert cosine_similarity(vectors, st_vectors).min() >= 0.999


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_invalid_utf8_is_an_invalid_argument(triton: ServerURLs, protocol: str) -> None:
    with connect(url_for(triton, protocol), timeout_s=60) as client:
        with pytest.raises(InvalidInputError, match="UTF-8"):
            client.infer("embeddings", {"TEXT": np.array([[b"\xff\xfe"]], dtype=object)})
