from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritonkit.processing.step_api import (
    ProcessingError,
    StepConfigError,
    StepContext,
    StepInputError,
    StepResult,
    decode_utf8,
    element_size_problem,
    non_finite_problem,
    prepare_step,
    prepared_by,
    preparer_of,
)


def test_non_finite_names_kind_and_rows() -> None:
    x = np.zeros((3, 2), np.float32)
    assert non_finite_problem("X", x) is None
    x[1, 0], x[2, 1] = np.nan, np.inf
    assert non_finite_problem("X", x) == (
        "input 'X' contains NaN and Inf in row(s) 1, 2; only finite values are accepted")
    assert non_finite_problem("I", np.ones(3, np.int32)) is None


def test_element_size_limit() -> None:
    array = np.array([[b"ab"], [b"x" * 10]], dtype=object)
    assert element_size_problem("IMAGE", array, 10) is None
    assert "element 1 is 10 bytes, above the limit of 9" in str(
        element_size_problem("IMAGE", array, 9))


def test_decode_utf8() -> None:
    assert decode_utf8("TEXT", np.array([b"caf\xc3\xa9"], dtype=object)) == ["café"]
    with pytest.raises(StepInputError, match="element 1 is not valid UTF-8"):
        decode_utf8("TEXT", np.array([b"ok", b"\xff"], dtype=object))


def test_asset_path_resolves_against_the_model_directory(tmp_path: Path) -> None:
    context = StepContext(parameters={"vocab": "assets/vocab.txt", "abs": str(tmp_path),
                                      "up": "assets/../../other"}, model_dir=tmp_path)
    assert context.asset_path("vocab") == tmp_path / "assets" / "vocab.txt"
    assert context.asset_path("abs") == tmp_path
    with pytest.raises(StepConfigError, match="'up'.*outside the model directory"):
        context.asset_path("up")
    with pytest.raises(StepConfigError, match="missing parameter 'nope'"):
        context.asset_path("nope")


def test_relative_asset_path_without_a_model_directory_is_an_error() -> None:
    context = StepContext(parameters={"tokenizer_dir": "artifacts/tokenizer"})
    with pytest.raises(StepConfigError) as info:
        context.asset_path("tokenizer_dir")
    assert "parameter 'tokenizer_dir'" in str(info.value)
    assert "'artifacts/tokenizer' is relative" in str(info.value)


def test_prepare_runs_once_and_its_state_reaches_the_function() -> None:
    calls: list[StepContext] = []

    def prepare(context: StepContext) -> str:
        calls.append(context)
        return f"state for {context.parameters['x']}"

    @prepared_by(prepare)
    def function(inputs: object, context: StepContext) -> StepResult:
        return StepResult(outputs={"S": np.array([context.prepared(prepare)])})

    def plain(inputs: object, context: StepContext) -> StepResult:
        return StepResult(outputs={})

    assert preparer_of(function) is prepare and preparer_of(plain) is None
    context = prepare_step(function, StepContext(parameters={"x": "1"}))
    assert len(calls) == 1
    for _ in range(3):
        assert function({}, context).outputs["S"].tolist() == ["state for 1"]
    assert len(calls) == 1  # prepared once, when the model loaded
    assert function({}, StepContext(parameters={"x": "2"})).outputs["S"].tolist() == [
        "state for 2"]  # a plain in-process call prepares on the spot
    assert prepare_step(plain, context) is context


def test_error_classes_share_one_root() -> None:
    assert issubclass(StepInputError, ProcessingError) and issubclass(StepInputError, ValueError)
    assert issubclass(StepConfigError, ProcessingError)
