"""Wire a pipeline (a chain of steps) into an ensemble config, connecting tensors by name.

Rules, per step input, in order: an explicit `inputs:` map entry; an ensemble tensor of the
same name produced earlier; the single output of the previous step when the step has a single
input. Ensemble inputs are the first step's inputs; ensemble outputs are `outputs:` or the last
step's outputs, and keep their producer's `label_filename` (so the classification extension
answers with labels on the ensemble too). Only consumed step outputs and ensemble outputs enter
`output_map`.
"""

from __future__ import annotations

from collections.abc import Mapping

from tritonclient.grpc import model_config_pb2 as mc

from tritonkit.errors import EnsembleError
from tritonkit.spec import PipelineSpec, PipelineStep


def _step_label(pipeline: PipelineSpec, index: int, step: PipelineStep) -> str:
    return f"pipeline {pipeline.name!r}, step {index} {step.model!r}"


def _source_for(
    pipeline: PipelineSpec, index: int, step: PipelineStep, input_name: str, *,
    config: mc.ModelConfig, available: Mapping[str, mc.ModelOutput | mc.ModelInput],
    previous_outputs: list[str],
) -> str:
    if input_name in step.inputs:
        source = step.inputs[input_name]
        if source not in available:
            raise EnsembleError(
                f"{_step_label(pipeline, index, step)}: input {input_name!r} is mapped to "
                f"{source!r}, which no earlier step produces; produced so far: "
                f"{', '.join(sorted(available)) or 'nothing'}")
        return source
    if input_name in available:
        return input_name
    if len(config.input) == 1 and len(previous_outputs) == 1:
        return previous_outputs[0]
    raise EnsembleError(
        f"{_step_label(pipeline, index, step)}: cannot tell which tensor feeds input "
        f"{input_name!r}; add `inputs: {{{input_name}: <tensor>}}` to the step. Produced so "
        f"far: {', '.join(sorted(available)) or 'nothing'}")


def ensemble_config(
    pipeline: PipelineSpec, configs: Mapping[str, mc.ModelConfig],
) -> mc.ModelConfig:
    """Build the ensemble config of `pipeline` from the configs of its steps."""
    ensemble = mc.ModelConfig(name=pipeline.name, platform="ensemble",
                              max_batch_size=pipeline.max_batch_size)
    available: dict[str, mc.ModelOutput | mc.ModelInput] = {}
    producer: dict[str, int] = {}  # ensemble tensor -> step index (-1: ensemble input)
    consumed: set[str] = set()
    previous_outputs: list[str] = []
    steps: list[mc.ModelEnsembling.Step] = []
    step_outputs: list[dict[str, str]] = []
    for index, step in enumerate(pipeline.steps):
        config = configs.get(step.model)
        if config is None:
            raise EnsembleError(f"{_step_label(pipeline, index, step)}: no such model")
        for key in step.inputs:
            if key not in {t.name for t in config.input}:
                raise EnsembleError(
                    f"{_step_label(pipeline, index, step)}: `inputs` maps {key!r}, which is not "
                    f"an input of {step.model!r}; its inputs: "
                    f"{', '.join(t.name for t in config.input)}")
        for key in step.outputs:
            if key not in {t.name for t in config.output}:
                raise EnsembleError(
                    f"{_step_label(pipeline, index, step)}: `outputs` maps {key!r}, which is "
                    f"not an output of {step.model!r}; its outputs: "
                    f"{', '.join(t.name for t in config.output)}")
        entry = mc.ModelEnsembling.Step(model_name=step.model, model_version=-1)
        for tensor in config.input:
            if index == 0:
                name = step.inputs.get(tensor.name, tensor.name)
                ensemble_input = ensemble.input.add()
                ensemble_input.CopyFrom(tensor)
                ensemble_input.name = name
                available[name] = tensor
                producer[name] = -1
            else:
                name = _source_for(pipeline, index, step, tensor.name, config=config,
                                   available=available, previous_outputs=previous_outputs)
            entry.input_map[tensor.name] = name
            consumed.add(name)
        outputs: dict[str, str] = {}
        for tensor in config.output:
            name = step.outputs.get(tensor.name, tensor.name)
            if name in producer:
                raise EnsembleError(
                    f"{_step_label(pipeline, index, step)}: output {tensor.name!r} would "
                    f"produce ensemble tensor {name!r} a second time; rename it with "
                    f"`outputs: {{{tensor.name}: <new name>}}`")
            producer[name] = index
            available[name] = tensor
            outputs[tensor.name] = name
        previous_outputs = list(outputs.values())
        steps.append(entry)
        step_outputs.append(outputs)
    wanted = list(pipeline.outputs) or previous_outputs
    for name in wanted:
        if name not in producer or producer[name] < 0:
            raise EnsembleError(f"pipeline {pipeline.name!r}: output {name!r} is not produced "
                                f"by any step; produced: {', '.join(sorted(producer))}")
        out = ensemble.output.add()
        source = available[name]
        out.name = name
        out.data_type = source.data_type
        out.dims.extend(source.dims)
        if source.HasField("reshape"):
            out.reshape.CopyFrom(source.reshape)
        if isinstance(source, mc.ModelOutput) and source.label_filename:
            out.label_filename = source.label_filename
    keep = consumed | set(wanted)
    for entry, outputs in zip(steps, step_outputs, strict=True):
        for step_output, name in outputs.items():
            if name in keep:
                entry.output_map[step_output] = name
        ensemble.ensemble_scheduling.step.append(entry)
    return ensemble
