"""Pipeline -> ensemble wiring: tensors connected by name, errors naming the step."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from tests.onnx_factories import make_image_model
from tritonkit.build.config_writer import model_config, python_step_config
from tritonkit.build.onnx_inspect import inspect_onnx
from tritonkit.build.pipeline_wiring import ensemble_config
from tritonkit.errors import EnsembleError
from tritonkit.spec import BuildSpec, Target, parse_spec

BASE = """
models:
  - {name: clf, onnx: clf.onnx, max_batch_size: 16}
python_steps:
  - name: pre
    function: tritonkit.processing.steps:preprocess_images
    max_batch_size: 16
    inputs: [{name: IMAGE, dtype: BYTES, dims: [1]}]
    outputs: [{name: PIXELS, dtype: FP32, dims: [1, 8, 8]}]
  - name: post
    function: tritonkit.processing.steps:classify_top_k
    max_batch_size: 16
    inputs: [{name: LOGITS, dtype: FP32, dims: [10]}]
    outputs:
      - {name: LABELS, dtype: BYTES, dims: [3]}
      - {name: SCORES, dtype: FP32, dims: [3]}
pipelines:
"""


def build(tmp_path: Path, pipeline: str) -> tuple[BuildSpec, dict[str, mc.ModelConfig]]:
    make_image_model(tmp_path / "clf.onnx")
    spec = parse_spec(BASE + pipeline, tmp_path / "models.yaml")
    configs = {
        m.name: model_config(m, inspect_onnx(m.onnx), target=Target.LOCAL) for m in spec.models
    }
    configs.update({s.name: python_step_config(s) for s in spec.python_steps})
    return spec, configs


def test_chain_is_wired_by_single_io_and_names(tmp_path: Path) -> None:
    spec, configs = build(tmp_path, "  - {name: p, max_batch_size: 8, steps: [pre, clf, post]}\n")
    config = ensemble_config(spec.pipelines[0], configs)
    assert config.platform == "ensemble" and config.max_batch_size == 8
    assert [i.name for i in config.input] == ["IMAGE"]
    assert [(o.name, o.data_type) for o in config.output] == [
        ("LABELS", mc.TYPE_STRING),
        ("SCORES", mc.TYPE_FP32),
    ]
    steps = config.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["pre", "clf", "post"]
    assert dict(steps[1].input_map) == {"pixels": "PIXELS"}  # single output -> single input
    assert dict(steps[1].output_map) == {"logits": "logits"}
    assert dict(steps[2].input_map) == {"LOGITS": "logits"}
    assert dict(steps[2].output_map) == {"LABELS": "LABELS", "SCORES": "SCORES"}


def test_explicit_maps_rename_tensors(tmp_path: Path) -> None:
    spec, configs = build(
        tmp_path,
        """  - name: p
    max_batch_size: 8
    outputs: [LABELS]
    steps:
      - {model: pre, inputs: {IMAGE: RAW}}
      - {model: clf, inputs: {pixels: PIXELS}, outputs: {logits: LOGITS}}
      - post
""",
    )
    config = ensemble_config(spec.pipelines[0], configs)
    assert [i.name for i in config.input] == ["RAW"]
    assert [o.name for o in config.output] == ["LABELS"]
    steps = config.ensemble_scheduling.step
    assert dict(steps[0].input_map) == {"IMAGE": "RAW"}
    assert dict(steps[2].output_map) == {"LABELS": "LABELS"}  # SCORES is not consumed


def test_unknown_map_key_names_the_step(tmp_path: Path) -> None:
    spec, configs = build(
        tmp_path,
        """  - name: p
    max_batch_size: 8
    steps: [pre, {model: clf, inputs: {image: PIXELS}}, post]
""",
    )
    with pytest.raises(EnsembleError, match=r"step 1 'clf': `inputs` maps 'image'"):
        ensemble_config(spec.pipelines[0], configs)


def test_unproduced_source_names_the_step(tmp_path: Path) -> None:
    spec, configs = build(
        tmp_path,
        """  - name: p
    max_batch_size: 8
    steps: [pre, {model: clf, inputs: {pixels: NOPE}}, post]
""",
    )
    with pytest.raises(EnsembleError, match=r"step 1 'clf': input 'pixels' is mapped to 'NOPE'"):
        ensemble_config(spec.pipelines[0], configs)


def test_ambiguous_input_asks_for_a_map(tmp_path: Path) -> None:
    # post has one input but clf -> post needs LOGITS; pre -> post skips clf: PIXELS is single,
    # but the name differs and wiring by position would be a guess only for single->single.
    spec, configs = build(tmp_path, "  - {name: p, max_batch_size: 8, steps: [clf, post, pre]}\n")
    with pytest.raises(EnsembleError, match=r"step 2 'pre': cannot tell which tensor feeds"):
        ensemble_config(spec.pipelines[0], configs)


def test_duplicate_producer_is_rejected(tmp_path: Path) -> None:
    spec, configs = build(
        tmp_path,
        """  - name: p
    max_batch_size: 8
    steps: [pre, {model: clf, outputs: {logits: PIXELS}}, post]
""",
    )
    with pytest.raises(EnsembleError, match="produce ensemble tensor 'PIXELS' a second time"):
        ensemble_config(spec.pipelines[0], configs)
