"""Spec loading of a PyTorch source (`pytorch:` instead of `onnx:`): typed values, defaults,
and errors that name the field path and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonkit.errors import SpecError
from tritonkit.spec import DataType, DynamicAxis, ExporterKind, parse_spec

SOURCE = Path("models.yaml")
SPEC = """
models:
  - name: sr
    pytorch:
      factory: examples.model_zoo.espcn:espcn_x2
      weights: artifacts/sr.pt
{extra}      inputs:
        - name: low_res
          dtype: FP32
          shape: [1, 1, 64, 64]
          dynamic_axes: {axes}
{more_inputs}      outputs: {outputs}
    max_batch_size: {mbs}
"""


def spec_text(*, axes: str = "{0: batch, 2: height, 3: width}", mbs: int = 4, extra: str = "",
              more_inputs: str = "", outputs: str = "[high_res]") -> str:
    return SPEC.format(axes=axes, mbs=mbs, extra=extra, more_inputs=more_inputs,
                       outputs=outputs).replace("shape: [1, 1", "shape: [2, 1")


def error_of(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(text, SOURCE)
    return str(info.value)


def test_a_pytorch_source_gets_defaults_and_resolved_probes() -> None:
    model = parse_spec(spec_text(axes="{0: batch, 2: height, 3: {name: width, probe: 48}}"),
                       SOURCE).models[0]
    source = model.pytorch
    assert source is not None
    assert source.factory == "examples.model_zoo.espcn:espcn_x2"
    assert source.weights == SOURCE.resolve().parent / "artifacts" / "sr.pt"
    assert (source.exporter, source.opset, source.tolerance) == (ExporterKind.DYNAMO, 18, 1e-4)
    (tensor,) = source.inputs
    assert (tensor.name, tensor.dtype, tensor.shape) == ("low_res", DataType.FP32, (2, 1, 64, 64))
    assert dict(tensor.dynamic_axes) == {0: DynamicAxis(name="batch", probe=4),
                                         2: DynamicAxis(name="height", probe=128),
                                         3: DynamicAxis(name="width", probe=48)}
    assert source.outputs == ("high_res",)
    # where an onnxruntime build from the spec's folder publishes the export
    assert model.onnx == (SOURCE.resolve().parent / "build" / "onnxruntime_repository" / "sr"
                          / "1" / "model.onnx")


def test_options_and_an_unbatched_source() -> None:
    text = spec_text(axes="{2: height}", mbs=0,
                     extra="      exporter: torchscript\n      opset: 17\n"
                           "      tolerance: 1.0e-3\n")
    source = parse_spec(text, SOURCE).models[0].pytorch
    assert source is not None
    assert (source.exporter, source.opset, source.tolerance) == (
        ExporterKind.TORCHSCRIPT, 17, 1e-3)


def test_integer_inputs_take_a_high_bound() -> None:
    more = ("        - {name: ids, dtype: INT64, shape: [2, 16], high: 30000,\n"
            "           dynamic_axes: {0: batch, 1: sequence}}\n")
    source = parse_spec(spec_text(more_inputs=more), SOURCE).models[0].pytorch
    assert source is not None
    assert source.inputs[1].high == 30000
    assert source.inputs[1].dynamic_axes[1] == DynamicAxis(name="sequence", probe=32)


@pytest.mark.parametrize(("text", "expected"), [
    (spec_text().replace("    pytorch:", "    onnx: m.onnx\n    pytorch:"),
     "models.yaml: models[0]: must set exactly one of onnx (an ONNX file) and pytorch"),
    ("models: [{name: m, max_batch_size: 1}]",
     "models.yaml: models[0]: must set exactly one of onnx (an ONNX file) and pytorch"),
    (spec_text(axes="{2: height, 3: width}"),
     "models.yaml: models[0].pytorch.inputs[0].dynamic_axes: must declare axis 0 of "
     "'low_res' dynamic (e.g. {0: batch}): max_batch_size 4 batches along axis 0"),
    (spec_text(axes="{0: batch, 4: depth}"),
     "models.yaml: models[0].pytorch.inputs[0].dynamic_axes.4: axis 4 is out of range for "
     "the example shape of rank 4 (axes 0..3)"),
    (spec_text(axes="{0: batch, x: depth}"),
     "models[0].pytorch.inputs[0].dynamic_axes: 'x' is not an axis index"),
    (spec_text(axes="{0: batch, 2: 'not a name'}"),
     "models[0].pytorch.inputs[0].dynamic_axes.2: 'not a name' is not an axis name"),
    (spec_text(axes="{0: batch, 2: {name: height, probe: 64}}"),
     "models[0].pytorch.inputs[0].dynamic_axes.2.probe: must differ from the example size 64"),
    (spec_text(axes="{0: batch, 2: {name: height, probe: 0}}"),
     "models[0].pytorch.inputs[0].dynamic_axes.2.probe: must be >= 1, got 0"),
    (spec_text(axes="{0: batch, 1: channels}"),
     "models[0].pytorch.inputs[0].dynamic_axes.1: axis 1 (channels) has example size 1: "
     "torch.export fixes sizes 0 and 1"),
    (spec_text().replace("examples.model_zoo.espcn:espcn_x2", "espcn_x2"),
     "models[0].pytorch.factory: 'espcn_x2' must look like 'package.module:function'"),
    (spec_text().replace("FP32", "FP8"), "models[0].pytorch.inputs[0].dtype: must be one of"),
    (spec_text().replace("FP32", "BYTES"),
     "models[0].pytorch.inputs[0].dtype: BYTES cannot be a PyTorch tensor"),
    (spec_text().replace("[2, 1, 64, 64]", "[2, 0, 64, 64]"),
     "models[0].pytorch.inputs[0].shape[1]: must be >= 1, got 0"),
    (spec_text(outputs="[]"), "models[0].pytorch.outputs: must list the output tensor names"),
    (spec_text(outputs="[y, y]"), "models[0].pytorch.outputs[1]: 'y' is named twice"),
    (spec_text(outputs="[low_res]"), "models[0].pytorch.outputs[0]: 'low_res' is named twice"),
    (spec_text(extra="      tolerance: 0\n"), "models[0].pytorch.tolerance: must be > 0"),
    (spec_text(extra="      exporter: onnx\n"),
     "models[0].pytorch.exporter: must be one of dynamo, torchscript, got 'onnx'"),
    (spec_text(extra="      weights: [a]\n").replace("      weights: artifacts/sr.pt\n", ""),
     "models[0].pytorch.weights: must be a string"),
    (spec_text(extra="      device: cuda\n"), "models[0].pytorch: unknown field(s) device"),
    (spec_text(more_inputs="        - {name: mask, dtype: FP32, shape: [3, 5], "
                           "dynamic_axes: {0: batch}}\n"),
     "models[0].pytorch.inputs[1].dynamic_axes.0: axis 0 (batch) has example size 3 and probe "
     "5, but 'low_res' axis 0, also batch, has 2 and 4: axes sharing a name must agree"),
    (spec_text(more_inputs="        - {name: mask, dtype: FP32, shape: [2, 5], "
                           "dynamic_axes: {0: rows}}\n"),
     "models[0].pytorch.inputs: axis 0 is the batch axis of every input, but it has the names "
     "batch, rows: give them one name"),
    (spec_text(more_inputs="        - {name: low_res, dtype: FP32, shape: [2, 5], "
                           "dynamic_axes: {0: batch}}\n"),
     "models[0].pytorch.inputs[1].name: duplicate input name 'low_res'"),
    (spec_text().replace("dtype: FP32\n", "dtype: FP32\n          high: 4\n"),
     "models[0].pytorch.inputs[0].high: applies to integer inputs only, not FP32"),
])
def test_pytorch_source_errors_name_the_field(text: str, expected: str) -> None:
    assert expected in error_of(text)
