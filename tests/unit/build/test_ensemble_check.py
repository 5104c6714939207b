from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from tests.unit.build.repo_factory import (
    digits_configs,
    ensemble,
    model,
    step,
    tensor_in,
    tensor_out,
)
from tritonkit.build.ensemble_check import EnsembleProblem, ensemble_order, validate_ensemble
from tritonkit.errors import EnsembleError


def messages(problems: list[EnsembleProblem]) -> list[str]:
    return [str(p) for p in problems]


def check(configs: dict[str, mc.ModelConfig], name: str = "digits") -> list[str]:
    return messages(validate_ensemble(configs[name], configs))


def test_correct_pipeline_has_no_problems() -> None:
    assert check(digits_configs()) == []


def test_problem_names_ensemble_and_step() -> None:
    problem = EnsembleProblem(
        ensemble="digits", step="digits_classifier", step_number=2, message="something"
    )
    assert str(problem) == "ensemble 'digits', step 2 'digits_classifier': something"
    assert str(EnsembleProblem(ensemble="digits", step=None, message="x")) == "ensemble 'digits': x"


def test_dtype_mismatch_names_the_step_input_and_the_producer() -> None:
    configs = digits_configs()
    configs["digits_classifier"].input[0].data_type = mc.TYPE_FP16

    assert check(configs) == [
        "ensemble 'digits', step 2 'digits_classifier': input 'pixels' dtype TYPE_FP16 != "
        "TYPE_FP32 from 'PIXELS' (step 1 'digits_preprocess' output 'PIXELS')"
    ]


def test_shape_mismatch_between_steps() -> None:
    configs = digits_configs()
    del configs["digits_classifier"].input[0].dims[:]
    configs["digits_classifier"].input[0].dims.extend([64])

    assert check(configs) == [
        "ensemble 'digits', step 2 'digits_classifier': input 'pixels' shape [64] != [1, 8, 8] "
        "from 'PIXELS' (step 1 'digits_preprocess' output 'PIXELS')"
    ]


def test_dtype_and_shape_mismatch_on_an_ensemble_output() -> None:
    configs = digits_configs()
    scores = configs["digits"].output[1]
    scores.data_type = mc.TYPE_FP64
    del scores.dims[:]
    scores.dims.extend([5])

    assert check(configs) == [
        "ensemble 'digits': ensemble output 'SCORES' dtype TYPE_FP64 != TYPE_FP32 from 'SCORES' "
        "(step 3 'digits_postprocess' output 'SCORES')",
        "ensemble 'digits': ensemble output 'SCORES' shape [5] != [3] from 'SCORES' "
        "(step 3 'digits_postprocess' output 'SCORES')",
    ]


def test_variable_dims_match_anything_of_the_same_rank() -> None:
    configs = digits_configs()
    del configs["digits_classifier"].input[0].dims[:]
    configs["digits_classifier"].input[0].dims.extend([-1, 8, -1])

    assert check(configs) == []


def test_ensemble_input_reshape_is_the_shape_steps_see() -> None:
    configs = digits_configs()
    configs["digits_preprocess"].input[0].dims[:] = [-1]
    image = configs["digits"].input[0]
    image.dims[:] = [1, 1]
    image.reshape.shape.extend([1])

    assert check(configs) == []

    image.reshape.shape[:] = [2, 3]
    assert check(configs) == [
        "ensemble 'digits', step 1 'digits_preprocess': input 'IMAGE' shape [-1] != [2, 3] "
        "from 'IMAGE' (ensemble input 'IMAGE')"
    ]


def test_unmapped_input_and_tensor_produced_twice() -> None:
    configs = digits_configs()
    # The classifier gets a second, required input that no step maps.
    configs["digits_classifier"].input.add(name="temperature", data_type=mc.TYPE_FP32, dims=[1])
    # The postprocess step now writes PIXELS too, which preprocess already produces. As the
    # classifier reads PIXELS and postprocess reads the classifier's LOGITS, that is a cycle.
    configs["digits_postprocess"].output.add(name="EXTRA", data_type=mc.TYPE_FP32, dims=[1, 8, 8])
    configs["digits"].ensemble_scheduling.step[2].output_map["EXTRA"] = "PIXELS"

    assert check(configs) == [
        "ensemble 'digits', step 2 'digits_classifier': input 'temperature' of model "
        "'digits_classifier' is not mapped to any ensemble tensor (add it to input_map)",
        "ensemble 'digits', step 3 'digits_postprocess': output 'EXTRA' produces ensemble tensor "
        "'PIXELS', which step 1 'digits_preprocess' output 'PIXELS' already produces; every "
        "tensor needs exactly one producer",
        "ensemble 'digits': steps cannot be ordered by data flow: step 2 'digits_classifier', "
        "step 3 'digits_postprocess' wait on each other's outputs in a cycle (or on steps in one)",
    ]


def test_removing_the_only_mapping_leaves_the_input_unmapped_and_the_tensor_unused() -> None:
    configs = digits_configs()
    del configs["digits"].ensemble_scheduling.step[1].input_map["pixels"]

    assert check(configs) == [
        "ensemble 'digits', step 2 'digits_classifier': input 'pixels' of model "
        "'digits_classifier' is not mapped to any ensemble tensor (add it to input_map)",
        "ensemble 'digits', step 1 'digits_preprocess': output 'PIXELS' produces ensemble tensor "
        "'PIXELS', which no later step uses and which is not an ensemble output",
    ]


def test_unknown_map_keys_and_missing_model() -> None:
    configs = digits_configs()
    steps = configs["digits"].ensemble_scheduling.step
    steps[0].input_map["RAW"] = steps[0].input_map.pop("IMAGE")
    steps[1].output_map["probabilities"] = steps[1].output_map.pop("logits")
    steps[2].model_name = "digits_postprocess_v2"

    assert check(configs) == [
        "ensemble 'digits', step 1 'digits_preprocess': input_map key 'RAW' (ensemble tensor "
        "'IMAGE') is not an input of model 'digits_preprocess'; its inputs: 'IMAGE'",
        "ensemble 'digits', step 1 'digits_preprocess': input 'IMAGE' of model "
        "'digits_preprocess' is not mapped to any ensemble tensor (add it to input_map)",
        "ensemble 'digits', step 2 'digits_classifier': output_map key 'probabilities' "
        "(ensemble tensor 'LOGITS') is not an output of model 'digits_classifier'; its outputs: "
        "'logits'",
        "ensemble 'digits', step 3 'digits_postprocess_v2': model 'digits_postprocess_v2' is "
        "not in the repository",
    ]


def test_optional_inputs_may_stay_unmapped() -> None:
    configs = digits_configs()
    configs["digits_classifier"].input.add(
        name="temperature", data_type=mc.TYPE_FP32, dims=[1], optional=True
    )
    assert check(configs) == []


def test_unused_ensemble_input_unused_output_and_unproduced_ensemble_output() -> None:
    configs = digits_configs()
    ens = configs["digits"]
    ens.input.add(name="LOCALE", data_type=mc.TYPE_STRING, dims=[1])
    ens.output.add(name="EMBEDDING", data_type=mc.TYPE_FP32, dims=[16])
    del ens.ensemble_scheduling.step[2].output_map["SCORES"]
    ens.ensemble_scheduling.step[2].output_map["SCORES"] = "SCORES_UNUSED"
    ens.output[1].name = "SCORES_OUT"  # nothing produces it any more

    assert check(configs) == [
        "ensemble 'digits': ensemble output 'EMBEDDING' is not produced by any step",
        "ensemble 'digits': ensemble input 'LOCALE' is not used by any step",
        "ensemble 'digits': ensemble output 'SCORES_OUT' is not produced by any step",
        "ensemble 'digits', step 3 'digits_postprocess': output 'SCORES' produces ensemble "
        "tensor 'SCORES_UNUSED', which no later step uses and which is not an ensemble output",
    ]


def test_step_reading_a_tensor_nobody_produces() -> None:
    configs = digits_configs()
    configs["digits"].ensemble_scheduling.step[1].input_map["pixels"] = "PIXELZ"

    assert check(configs) == [
        "ensemble 'digits', step 1 'digits_preprocess': output 'PIXELS' produces ensemble "
        "tensor 'PIXELS', which no later step uses and which is not an ensemble output",
        "ensemble 'digits', step 2 'digits_classifier': input 'pixels' reads ensemble tensor "
        "'PIXELZ', which is neither an ensemble input nor produced by any step",
    ]


def test_ensemble_max_batch_size_above_a_step() -> None:
    configs = digits_configs()
    configs["digits"].max_batch_size = 64

    problems = validate_ensemble(configs["digits"], configs)

    assert [(p.step, p.step_number) for p in problems] == [
        ("digits_preprocess", 1),
        ("digits_classifier", 2),
        ("digits_postprocess", 3),
    ]
    assert str(problems[1]) == (
        "ensemble 'digits', step 2 'digits_classifier': the ensemble's max_batch_size 64 exceeds "
        "this model's max_batch_size 8; Triton refuses to load the ensemble (lower the "
        "ensemble's max_batch_size or raise the model's)"
    )


def test_unbatched_step_in_batching_ensemble_needs_a_leading_variable_axis() -> None:
    configs = digits_configs()
    classifier = configs["digits_classifier"]
    classifier.max_batch_size = 0

    assert check(configs) == [
        "ensemble 'digits', step 2 'digits_classifier': model 'digits_classifier' has "
        "max_batch_size 0 but the ensemble batches (max_batch_size 8): the step receives the "
        "batch as its first axis, so the dims of 'pixels', 'logits' must start with -1 (or give "
        "the model max_batch_size >= 8)"
    ]

    # Spelled with the batch axis in its dims, the unbatched step fits the batching ensemble.
    classifier.input[0].dims[:] = [-1, 1, 8, 8]
    classifier.output[0].dims[:] = [-1, 10]
    assert check(configs) == []


def test_unbatched_ensemble_may_use_batching_steps() -> None:
    configs = digits_configs()
    ens = configs["digits"]
    ens.max_batch_size = 0
    ens.input[0].dims[:] = [-1, 1]
    for output in ens.output:
        output.dims.insert(0, -1)

    assert check(configs) == []

    ens.input[0].dims[:] = [1]  # no batch axis any more: [1] != [-1, 1]
    assert check(configs) == [
        "ensemble 'digits', step 1 'digits_preprocess': input 'IMAGE' shape [-1, 1] != [1] from "
        "'IMAGE' (ensemble input 'IMAGE') (full shapes: one side batches, the other does not)"
    ]


def test_not_an_ensemble() -> None:
    configs = digits_configs()
    assert check(configs, "digits_classifier") == [
        "ensemble 'digits_classifier': platform is 'onnxruntime_onnx', not 'ensemble'",
        "ensemble 'digits_classifier': has no ensemble_scheduling, so it has no steps",
    ]


def pipeline_listed_out_of_order() -> mc.ModelConfig:
    return ensemble(
        "shuffled",
        inputs=[tensor_in("IMAGE", mc.TYPE_STRING, [1])],
        outputs=[
            tensor_out("SCORES", mc.TYPE_FP32, [3]),
            tensor_out("LABELS", mc.TYPE_STRING, [3]),
        ],
        steps=[
            step(
                "digits_postprocess", {"LOGITS": "LOGITS"}, {"LABELS": "LABELS", "SCORES": "SCORES"}
            ),
            step("digits_classifier", {"pixels": "PIXELS"}, {"logits": "LOGITS"}),
            step("digits_preprocess", {"IMAGE": "IMAGE"}, {"PIXELS": "PIXELS"}),
        ],
    )


def test_order_follows_data_flow_not_listing() -> None:
    shuffled = pipeline_listed_out_of_order()
    configs = digits_configs() | {"shuffled": shuffled}

    assert ensemble_order(shuffled) == [2, 1, 0]
    assert ensemble_order(configs["digits"]) == [0, 1, 2]
    assert check(configs, "shuffled") == []


def test_cycle_raises_and_is_reported() -> None:
    loop = model(
        "loop",
        backend="python",
        inputs=[tensor_in("A", mc.TYPE_FP32, [4])],
        outputs=[tensor_out("B", mc.TYPE_FP32, [4])],
    )
    cyclic = ensemble(
        "cyclic",
        inputs=[tensor_in("X", mc.TYPE_FP32, [4])],
        outputs=[tensor_out("Y", mc.TYPE_FP32, [4])],
        steps=[
            step("loop", {"A": "T2"}, {"B": "T1"}),
            step("loop", {"A": "T1"}, {"B": "T2"}),
        ],
    )
    with pytest.raises(EnsembleError, match=r"step 1 'loop', step 2 'loop' wait on each other"):
        ensemble_order(cyclic)

    problems = check({"loop": loop, "cyclic": cyclic}, "cyclic")
    assert problems == [
        "ensemble 'cyclic': ensemble input 'X' is not used by any step",
        "ensemble 'cyclic': ensemble output 'Y' is not produced by any step",
        "ensemble 'cyclic': steps cannot be ordered by data flow: step 1 'loop', step 2 'loop' "
        "wait on each other's outputs in a cycle (or on steps in one)",
    ]
