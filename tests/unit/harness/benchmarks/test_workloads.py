"""Benchmark workloads: real encoded images (digits, ResNet, shapes demo split) and real
UTF-8 sentences (embeddings demo)."""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import pytest
from PIL import Image

from examples.demo.embeddings import DEMO_SENTENCES
from examples.model_zoo.digits import encoded_split
from examples.model_zoo.shapes import Split, make_split
from harness.benchmarks.errors import BenchmarkError
from harness.benchmarks.workloads import (
    IMAGE_INPUT,
    PIPELINES,
    TEXT_INPUT,
    WorkloadName,
    image_tensor,
    load_workload,
)
from tritonkit.spec import load_spec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
HAVE_RESNET = importlib.util.find_spec("examples.model_zoo.resnet") is not None


def test_light_is_the_digits_test_split_in_order() -> None:
    workload = load_workload("light", count=6)
    blobs, _ = encoded_split("test")
    assert workload.name is WorkloadName.LIGHT and workload.pipeline == "digits"
    assert workload.images == tuple(blobs[:6])
    assert all(b.startswith(PNG_MAGIC) for b in workload.images)
    assert len(set(workload.images)) == 6
    with Image.open(io.BytesIO(workload.images[0])) as image:
        assert image.size == (8, 8) and image.mode == "L"


def test_light_repeats_the_split_past_its_end() -> None:
    blobs, _ = encoded_split("test")
    workload = load_workload(WorkloadName.LIGHT, count=len(blobs) + 2)
    assert workload.images[len(blobs)] == blobs[0]
    assert workload.images[-1] == blobs[1]


def test_samples_are_the_ensemble_input_column() -> None:
    workload = load_workload("light", count=5)
    samples = workload.samples()
    assert list(samples) == [IMAGE_INPUT] == ["IMAGE"]
    assert samples["IMAGE"].shape == (5, 1) and samples["IMAGE"].dtype == np.object_
    assert samples["IMAGE"][3, 0] == workload.images[3]


def test_image_batch_wraps_around() -> None:
    workload = load_workload("light", count=5)
    batch = workload.image_batch(3, offset=4)
    assert batch.shape == (3, 1)
    assert [batch[i, 0] for i in range(3)] == [workload.images[4], workload.images[0],
                                               workload.images[1]]
    with pytest.raises(BenchmarkError, match="batch size must be >= 1"):
        workload.image_batch(0)


def test_image_tensor_keeps_bytes_exactly() -> None:
    blobs = [b"\x00\x01", b"", b"\xff" * 3]
    tensor = image_tensor(blobs)
    assert tensor.shape == (3, 1) and [tensor[i, 0] for i in range(3)] == blobs


def test_unknown_workload_and_bad_count() -> None:
    with pytest.raises(BenchmarkError, match="unknown workload 'medium'; choose one of light, "
                       "heavy, detection, embeddings"):
        load_workload("medium", count=1)
    with pytest.raises(BenchmarkError, match="at least 1 image"):
        load_workload("light", count=0)


def test_each_workload_names_its_pipeline() -> None:
    assert PIPELINES == {WorkloadName.LIGHT: "digits", WorkloadName.HEAVY: "resnet",
                         WorkloadName.DETECTION: "detection",
                         WorkloadName.EMBEDDINGS: "embeddings"}


def test_each_workload_feeds_its_pipelines_input_in_models_yaml() -> None:
    spec = load_spec("models.yaml")
    for name, pipeline in PIPELINES.items():
        first = spec.python_step(next(p for p in spec.pipelines
                                      if p.name == pipeline).steps[0].model)
        assert first is not None
        (tensor,) = first.inputs
        assert tensor.dtype.value == "BYTES" and list(tensor.dims) == [1]
        assert load_workload(name, count=1).input_name == tensor.name, name


def test_detection_is_the_shapes_demo_split_as_decodable_pngs() -> None:
    workload = load_workload("detection", count=5)
    assert workload.name is WorkloadName.DETECTION and workload.pipeline == "detection"
    assert workload.input_name == IMAGE_INPUT
    assert workload.items == tuple(i.png for i in make_split(5, split=Split.DEMO))
    assert len(set(workload.items)) == 5
    for blob, source in zip(workload.items, make_split(5, split=Split.DEMO), strict=True):
        assert blob.startswith(PNG_MAGIC)
        with Image.open(io.BytesIO(blob)) as image:
            image.load()
            assert image.mode == "RGB" and image.size == (source.width, source.height)
    samples = workload.samples()
    assert list(samples) == ["IMAGE"] and samples["IMAGE"].shape == (5, 1)
    assert samples["IMAGE"][2, 0] == workload.items[2]


def test_embeddings_are_the_demo_sentences_as_utf8_text_rows() -> None:
    count = len(DEMO_SENTENCES) + 3
    workload = load_workload("embeddings", count=count)
    assert workload.name is WorkloadName.EMBEDDINGS and workload.pipeline == "embeddings"
    assert workload.input_name == TEXT_INPUT == "TEXT"
    texts = [blob.decode("utf-8") for blob in workload.items]  # strict: raises if not UTF-8
    assert texts[:len(DEMO_SENTENCES)] == list(DEMO_SENTENCES)
    assert texts[len(DEMO_SENTENCES):] == list(DEMO_SENTENCES[:3])  # repeats past the end
    samples = workload.samples()
    assert list(samples) == ["TEXT"]
    assert samples["TEXT"].shape == (count, 1) and samples["TEXT"].dtype == np.object_
    assert samples["TEXT"][1, 0] == DEMO_SENTENCES[1].encode("utf-8")


@pytest.mark.skipif(not HAVE_RESNET,
                    reason="examples.model_zoo.resnet (the heavy example) is absent")
def test_heavy_is_deterministic_synthetic_jpegs() -> None:
    workload = load_workload("heavy", count=3)
    again = load_workload("heavy", count=2)
    assert workload.pipeline == "resnet" and workload.name is WorkloadName.HEAVY
    assert workload.images[:2] == again.images
    assert all(b.startswith(JPEG_MAGIC) for b in workload.images)
    assert len(set(workload.images)) == 3
    with Image.open(io.BytesIO(workload.images[0])) as image:
        assert image.mode == "RGB" and min(image.size) >= 224
