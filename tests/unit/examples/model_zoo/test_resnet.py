"""examples.model_zoo.resnet: architecture, seeded weights, synthetic images, spec contract, (slow)
build."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from PIL import Image

from examples.model_zoo import ModelZooError, resnet
from examples.model_zoo.stamp import STAMP_FILE
from tritonkit.processing.step_api import StepContext
from tritonkit.processing.steps import preprocess_images

ROOT = Path(__file__).resolve().parents[4]
ARTIFACTS = ROOT / "artifacts" / "resnet"
TORCHVISION_RESNET18_PARAMETERS = 11_689_512


def test_architecture_shapes_and_size() -> None:
    model = resnet.ResNet18().eval()
    with torch.no_grad():
        logits = model(torch.zeros(2, 3, resnet.HEIGHT, resnet.WIDTH))
    assert tuple(logits.shape) == (2, resnet.CLASSES)
    assert resnet.parameter_count(model) == TORCHVISION_RESNET18_PARAMETERS
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 20  # stem + 16 in blocks + 3 projection shortcuts


def test_seeded_weights_are_reproducible() -> None:
    first = resnet.make_model(seed=7).state_dict()
    second = resnet.make_model(seed=7).state_dict()
    other = resnet.make_model(seed=8).state_dict()
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert not torch.equal(first["stem.0.weight"], other["stem.0.weight"])
    assert not resnet.make_model(seed=7).training


def test_estimated_statistics_center_and_scale_the_logits() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.normal(0.0, 1.0, size=(6, 3, 64, 64)).astype(np.float32)
    model = resnet.make_model(seed=3, stats_pixels=pixels)
    stem_bn = model.stem[1]
    assert isinstance(stem_bn, torch.nn.BatchNorm2d)
    assert float(stem_bn.running_var.min()) > 0.0
    assert not torch.allclose(stem_bn.running_var, torch.ones_like(stem_bn.running_var))
    with torch.no_grad():
        logits = model(torch.from_numpy(pixels)).numpy()
    assert np.abs(logits.mean(axis=0)).max() < 1e-3
    centered = logits - logits.mean(axis=0)
    assert float(centered.std(ddof=1)) == pytest.approx(resnet.LOGIT_STD, rel=1e-3)


def test_synthetic_images_are_deterministic_jpegs() -> None:
    images = resnet.synthetic_images(5, seed=0)
    assert resnet.synthetic_images(5, seed=0) == images
    assert resnet.synthetic_images(3, seed=0) == images[:3]  # image i depends on (seed, i)
    assert resnet.synthetic_images(2, seed=1) != images[:2]
    assert len(set(images)) == 5
    decoded = Image.open(io.BytesIO(images[0]))
    assert (decoded.format, decoded.mode, decoded.size) == ("JPEG", "RGB", (256, 256))
    small = Image.open(io.BytesIO(resnet.synthetic_images(1, size=32)[0]))
    assert small.size == (32, 32)
    assert resnet.synthetic_images(0) == []


@pytest.mark.parametrize(("count", "size", "message"), [(-1, 256, "count"), (1, 4, "size")])
def test_synthetic_images_reject_bad_arguments(count: int, size: int, message: str) -> None:
    with pytest.raises(ModelZooError, match=message):
        resnet.synthetic_images(count, size=size)


def test_preprocess_equals_the_serving_step() -> None:
    spec = yaml.safe_load((ROOT / "models.yaml").read_text(encoding="utf-8"))
    (step,) = [s for s in spec["python_steps"] if s["name"] == "resnet_preprocess"]
    images = resnet.synthetic_images(3, seed=5)
    served = preprocess_images(
        {"IMAGE": np.array([[b] for b in images], dtype=np.object_)},
        StepContext(parameters={k: str(v) for k, v in step["parameters"].items()}),
    )
    assert served.errors == {}
    local = resnet.preprocess(images)
    assert local.shape == (3, 3, 224, 224) and local.dtype == np.float32
    np.testing.assert_array_equal(served.outputs["PIXELS"], local)
    assert step["outputs"][0]["dims"] == [resnet.CHANNELS, resnet.HEIGHT, resnet.WIDTH]


def test_spec_entries_match_the_artifacts() -> None:
    spec = yaml.safe_load((ROOT / "models.yaml").read_text(encoding="utf-8"))
    (model,) = [m for m in spec["models"] if m["name"] == "resnet_classifier"]
    assert model["onnx"] == f"artifacts/resnet/{resnet.ONNX_FILE}"
    assert model["labels"] == f"artifacts/resnet/{resnet.LABELS_FILE}"
    assert model["warmup"]["samples"] == f"artifacts/resnet/{resnet.HOLDOUT_FILE}"
    assert model["warmup"]["batch_size"] <= resnet.HOLDOUT_ROWS
    # the classifier's probabilities are the pipeline's output: top-k through Triton's
    # classification extension, no Python postprocess step
    assert not [s for s in spec["python_steps"] if s["name"] == "resnet_postprocess"]
    (pipeline,) = [p for p in spec["pipelines"] if p["name"] == "resnet"]
    assert pipeline["steps"][-1]["outputs"] == {resnet.OUTPUT_NAME: "PROBABILITIES"}
    assert not [m for m in spec["models"]
                if m["name"].startswith("resnet") and m.get("precision", "fp32") != "fp32"]


def test_class_labels() -> None:
    labels = resnet.class_labels()
    assert len(labels) == 1000 and len(set(labels)) == 1000
    assert (labels[0], labels[999]) == ("class_000", "class_999")


def _digests(directory: Path) -> dict[str, str]:
    names = [*resnet.artifact_paths(directory).values(), directory / STAMP_FILE]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in names}


@pytest.mark.slow
def test_build_is_cached_and_byte_identical(tmp_path: Path) -> None:
    out = tmp_path / "resnet"
    built = resnet.build_resnet(out)
    assert not built.cached and built.parameters == TORCHVISION_RESNET18_PARAMETERS
    again = resnet.build_resnet(out)
    assert again.cached and again.parameters == built.parameters
    first = _digests(out)
    if (ARTIFACTS / STAMP_FILE).is_file() and \
            json.loads((ARTIFACTS / STAMP_FILE).read_text())["digest"] == \
            json.loads((out / STAMP_FILE).read_text())["digest"]:
        assert _digests(ARTIFACTS) == first  # `make models` wrote the same bytes
    assert (out / resnet.LABELS_FILE).read_text().splitlines() == resnet.class_labels()
    with np.load(out / resnet.HOLDOUT_FILE) as holdout:
        assert list(holdout) == ["pixels"]
        pixels = holdout["pixels"]
    assert pixels.shape == (resnet.HOLDOUT_ROWS, 3, 224, 224) and pixels.dtype == np.float32
    np.testing.assert_array_equal(
        pixels[:2], resnet.preprocess(resnet.synthetic_images(2, seed=resnet.HOLDOUT_SEED)))
    session = ort.InferenceSession(str(out / resnet.ONNX_FILE),
                                   providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "pixels" and inp.shape[1:] == [3, 224, 224]
    assert isinstance(inp.shape[0], str)
    probabilities = session.run([resnet.OUTPUT_NAME], {"pixels": pixels[:8]})[0]
    assert probabilities.shape == (8, 1000) and len(set(np.argmax(probabilities, axis=1))) > 1
    ops = {node.op_type for node in onnx.load(str(out / resnet.ONNX_FILE)).graph.node}
    assert "BatchNormalization" not in ops  # folded into the convolutions
