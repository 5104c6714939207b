"""tritonkit.runtime.batching: concatenate, run once, split, and per-request failure isolation."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from tritonkit.processing import steps
from tritonkit.processing.step_api import StepContext, StepInputError, StepResult
from tritonkit.runtime.batching import (
    AdapterConfigError,
    ErrorKind,
    RequestError,
    StepOutputError,
    TensorConfig,
    concat_requests,
    config_parameters,
    config_tensors,
    conform_output,
    run_batched,
    split_result,
)


def rows(n: int, start: float = 0.0) -> dict[str, np.ndarray]:
    return {"X": np.arange(start, start + 2 * n, dtype=np.float32).reshape(n, 2),
            "Y": np.full((n, 1), start, dtype=np.int64)}


def test_concat_requests_stacks_in_order_and_counts_rows() -> None:
    merged, counts = concat_requests([rows(2, 0), rows(1, 100), rows(3, 200)])
    assert counts == [2, 1, 3]
    assert merged["X"].shape == (6, 2) and merged["Y"].shape == (6, 1)
    np.testing.assert_array_equal(merged["Y"][:, 0], [0, 0, 100, 200, 200, 200])
    assert concat_requests([]) == ({}, [])


def test_concat_single_request_does_not_copy() -> None:
    one = rows(2)
    merged, counts = concat_requests([one])
    assert counts == [2]
    assert merged["X"] is one["X"]


@pytest.mark.parametrize(("requests", "match"), [
    ([rows(1), {"X": np.zeros((1, 2), np.float32)}], "request 1 has inputs"),
    ([rows(1), {**rows(1), "X": np.zeros((1, 3), np.float32)}], "input 'X': request 1"),
    ([rows(1), {**rows(1), "Y": np.zeros((1, 1), np.int32)}], "input 'Y': request 1"),
    ([{"X": np.zeros((2, 2)), "Y": np.zeros((3, 1))}], "disagree on the batch size"),
    ([{"X": np.float32(1.0)}], "disagree on the batch size"),
    ([{}], "no inputs"),
])
def test_concat_refuses_mismatched_requests(requests: list, match: str) -> None:
    with pytest.raises(StepInputError, match=match):
        concat_requests(requests)


def test_split_result_slices_and_combines_row_errors() -> None:
    out = np.arange(6, dtype=np.float32).reshape(6, 1)
    result = StepResult(outputs={"Z": out},
                        errors={3: "image is truncated", 5: "empty", 4: "corrupt"})
    answers = split_result(result, [2, 1, 3])
    assert isinstance(answers[0], dict) and isinstance(answers[1], dict)
    np.testing.assert_array_equal(answers[0]["Z"][:, 0], [0, 1])
    np.testing.assert_array_equal(answers[1]["Z"][:, 0], [2])
    assert answers[2] == "row 0: image is truncated; row 1: corrupt; row 2: empty"


def test_split_result_caps_long_messages() -> None:
    result = StepResult(outputs={"Z": np.zeros((20, 1))}, errors={i: "bad" for i in range(20)})
    (answer,) = split_result(result, [20])
    assert isinstance(answer, str)
    assert answer.endswith("row 7: bad; and 12 more failed rows")


def test_split_result_refuses_misaligned_outputs() -> None:
    with pytest.raises(StepOutputError, match="expected 3 rows"):
        split_result(StepResult(outputs={"Z": np.zeros((2, 1))}), [1, 2])
    with pytest.raises(StepOutputError, match="outside the batch"):
        split_result(StepResult(outputs={"Z": np.zeros((3, 1))}, errors={3: "x"}), [1, 2])


class CountingStep:
    """Doubles X; refuses (for the whole batch) any X holding a negative value."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> StepResult:
        x = inputs["X"]
        self.calls.append(len(x))
        if (x < 0).any():
            raise StepInputError("X must not be negative")
        if (x > 1000).any():
            raise ZeroDivisionError("step bug")
        errors = {int(i): "row marked bad" for i in np.flatnonzero(x[:, 0] == 7)}
        return StepResult(outputs={"Z": x * 2}, errors=errors)


def test_run_batched_calls_the_step_once_for_good_requests() -> None:
    step = CountingStep()
    outcomes = run_batched(step, [rows(2), rows(1, 10), rows(3, 20)])
    assert step.calls == [6]
    assert all(isinstance(o, dict) for o in outcomes)
    np.testing.assert_array_equal(outcomes[1]["Z"], rows(1, 10)["X"] * 2)  # type: ignore[index]


def test_run_batched_row_errors_fail_only_their_request() -> None:
    step = CountingStep()
    bad = {"X": np.array([[0, 0], [7, 0]], np.float32), "Y": np.zeros((2, 1), np.int64)}
    outcomes = run_batched(step, [rows(1), bad, rows(1, 30)])
    assert step.calls == [4]
    assert outcomes[1] == RequestError(message="row 1: row marked bad",
                                       kind=ErrorKind.INVALID_INPUT)
    assert isinstance(outcomes[0], dict) and isinstance(outcomes[2], dict)


def test_run_batched_retries_alone_when_the_batch_raises() -> None:
    step = CountingStep()
    negative = {"X": -np.ones((1, 2), np.float32), "Y": np.zeros((1, 1), np.int64)}
    buggy = {"X": np.full((1, 2), 5000, np.float32), "Y": np.zeros((1, 1), np.int64)}
    outcomes = run_batched(step, [rows(2), negative, buggy, rows(1, 40)])
    assert step.calls == [5, 2, 1, 1, 1]  # the batch, then each request alone
    assert isinstance(outcomes[0], dict) and isinstance(outcomes[3], dict)
    assert outcomes[1] == RequestError(message="X must not be negative",
                                       kind=ErrorKind.INVALID_INPUT)
    assert outcomes[2] == RequestError(message="ZeroDivisionError: step bug",
                                       kind=ErrorKind.INTERNAL)


def test_run_batched_retries_when_requests_cannot_be_concatenated() -> None:
    step = CountingStep()
    wide = {"X": np.zeros((1, 3), np.float32), "Y": np.zeros((1, 1), np.int64)}
    outcomes = run_batched(step, [rows(1), wide])
    assert step.calls == [1, 1]
    assert all(isinstance(o, dict) for o in outcomes)


def test_run_batched_validator_rejects_before_the_batch() -> None:
    step = CountingStep()

    def validate(request: Mapping[str, np.ndarray]) -> str | None:
        if request["Y"].dtype != np.int64:
            return "Y must be INT64"
        if request["X"].shape[0] > 2:
            raise StepInputError("too many rows")
        return None

    odd = {"X": np.zeros((1, 2), np.float32), "Y": np.zeros((1, 1), np.int32)}
    outcomes = run_batched(step, [rows(1), odd, rows(3), rows(2)], validate=validate)
    assert step.calls == [3]
    assert outcomes[1] == RequestError(message="Y must be INT64", kind=ErrorKind.INVALID_INPUT)
    assert outcomes[2] == RequestError(message="too many rows", kind=ErrorKind.INVALID_INPUT)


def test_run_batched_with_the_real_classify_step() -> None:
    context = StepContext(parameters={"top_k": "2"}, labels=tuple("abc"))
    logits = [np.array([[1, 0.5, 0], [0.5, 1, 0]], np.float32),
              np.array([[0, np.nan, 1]], np.float32), np.array([[0.5, 0, 1]], np.float32)]
    outcomes = run_batched(lambda inputs: steps.classify_top_k(inputs, context),
                           [{"LOGITS": x} for x in logits])
    assert outcomes[0]["LABELS"].tolist() == [[b"a", b"b"], [b"b", b"a"]]  # type: ignore[index]
    assert outcomes[1] == RequestError(message="row 0: logits contain NaN or Inf",
                                       kind=ErrorKind.INVALID_INPUT)
    assert outcomes[2]["CLASS_INDICES"].tolist() == [[2, 0]]  # type: ignore[index]


# --- config helpers (config JSON as Triton 2.51 hands it to the Python backend) ---

CONFIG = {
    "name": "digits_postprocess", "backend": "python", "max_batch_size": 64,
    "input": [{"name": "LOGITS", "data_type": "TYPE_FP32", "format": "FORMAT_NONE",
               "dims": [10], "is_shape_tensor": False, "optional": False}],
    "output": [
        {"name": "LABELS", "data_type": "TYPE_STRING", "dims": [3], "label_filename": ""},
        {"name": "SCORES", "data_type": "TYPE_FP32", "dims": ["3"]},
        {"name": "SCALAR", "data_type": "TYPE_INT32", "dims": [1], "reshape": {}},
        {"name": "FLAT", "data_type": "TYPE_INT32", "dims": [4], "reshape": {"shape": [2, 2]}},
    ],
    "parameters": {"top_k": {"string_value": "3"}, "function": {"string_value": "m:f"}},
}
TO_NUMPY = {"TYPE_FP32": np.float32, "TYPE_STRING": np.object_, "TYPE_INT32": np.int32}


def test_config_parameters_and_tensors() -> None:
    assert config_parameters(CONFIG) == {"top_k": "3", "function": "m:f"}
    assert config_parameters({}) == {}
    inputs = config_tensors(CONFIG, "input", TO_NUMPY.__getitem__)
    assert inputs == (TensorConfig(name="LOGITS", dtype=np.dtype(np.float32), dims=(10,)),)
    outputs = config_tensors(CONFIG, "output", TO_NUMPY.__getitem__)
    assert [(t.name, t.dtype, t.dims) for t in outputs] == [
        ("LABELS", np.dtype(object), (3,)), ("SCORES", np.dtype(np.float32), (3,)),
        ("SCALAR", np.dtype(np.int32), ()), ("FLAT", np.dtype(np.int32), (2, 2))]
    with pytest.raises(AdapterConfigError, match="data_type"):
        config_tensors({"input": [{"name": "A", "data_type": "TYPE_NOPE"}]}, "input",
                       TO_NUMPY.__getitem__)


def test_conform_output_converts_and_checks() -> None:
    labels = TensorConfig(name="L", dtype=np.dtype(object), dims=(2,))
    out = conform_output(np.array([["a", "b"]]), labels, batched=True)
    assert out.dtype == np.object_ and out.tolist() == [[b"a", b"b"]]
    out = conform_output(np.array([[b"x", b"y"]], dtype="S1"), labels, batched=True)
    assert out.tolist() == [[b"x", b"y"]]
    scores = TensorConfig(name="S", dtype=np.dtype(np.float32), dims=(-1,))
    out = conform_output(np.ones((2, 5), np.float64), scores, batched=True)
    assert out.dtype == np.float32 and out.shape == (2, 5)
    with pytest.raises(StepOutputError, match=r"config dims are \[2\] after the batch axis"):
        conform_output(np.array([["a", "b", "c"]], dtype=object), labels, batched=True)
    with pytest.raises(StepOutputError, match="expected BYTES"):
        conform_output(np.ones((1, 2)), labels, batched=True)
    with pytest.raises(StepOutputError, match="is BYTES"):
        conform_output(np.array([[b"a"]], dtype=object), scores, batched=True)
