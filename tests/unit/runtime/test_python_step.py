"""tritonkit.runtime.python_step: config handling, and execute() answering each request alone."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from tests.unit.processing.test_text import tokenizer_dir  # noqa: F401 -- fixture
from tests.unit.runtime import pb_utils_standin as standin
from tritonkit.processing.step_api import StepContext, StepResult
from tritonkit.runtime import python_step
from tritonkit.runtime.batching import AdapterConfigError


def boom(inputs: object, context: StepContext) -> StepResult:
    raise MemoryError("out of memory in the step")


def wrong_outputs(inputs: dict, context: StepContext) -> StepResult:
    return StepResult(outputs={"SOMETHING_ELSE": np.zeros((len(inputs["LOGITS"]), 3))})


@pytest.fixture
def pb(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = standin.load()
    monkeypatch.setattr(python_step, "pb_utils", module)
    return module


def png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def step_config(name: str, function: str, inputs: list, outputs: list, **params: str) -> dict:
    parameters = {"function": function, **params}
    return {"name": name, "backend": "python", "max_batch_size": 64,
            "input": inputs, "output": outputs,
            "parameters": {k: {"string_value": v} for k, v in parameters.items()}}


POST_IO = (
    [{"name": "LOGITS", "data_type": "TYPE_FP32", "dims": [4]}],
    [{"name": "LABELS", "data_type": "TYPE_STRING", "dims": [2]},
     {"name": "SCORES", "data_type": "TYPE_FP32", "dims": [2]},
     {"name": "CLASS_INDICES", "data_type": "TYPE_INT32", "dims": [2]}],
)


def load_model(model_dir: Path, config: dict) -> python_step.TritonPythonModel:
    model = python_step.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(model_dir),
                      "model_version": "1", "model_name": config["name"]})
    return model


def test_resolve_function() -> None:
    from tritonkit.processing import steps

    assert python_step.resolve_function("tritonkit.processing.steps:classify_top_k") is \
        steps.classify_top_k
    for bad, match in [("tritonkit.processing.steps", "must look like"),
                       ("no_such_module_xyz:f", "cannot import"),
                       ("tritonkit.processing.steps:nope", "no callable")]:
        with pytest.raises(AdapterConfigError, match=match):
            python_step.resolve_function(bad)


def test_labels_path_and_read_labels(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("zero\none\r\ntwo  \n", encoding="utf-8")
    by_output = {"output": [{"name": "A"}, {"name": "B", "label_filename": "labels.txt"}]}
    by_param = {"parameters": {"labels_file": {"string_value": "labels.txt"}}}
    assert python_step.labels_path(by_output, tmp_path) == (tmp_path / "labels.txt").resolve()
    assert python_step.labels_path(by_param, tmp_path) == (tmp_path / "labels.txt").resolve()
    assert python_step.labels_path({"output": [{"label_filename": ""}]}, tmp_path) is None
    assert python_step.read_labels(tmp_path / "labels.txt") == ("zero", "one", "two")
    escape = {"parameters": {"labels_file": {"string_value": "../../etc/passwd"}}}
    with pytest.raises(AdapterConfigError, match="outside the model directory"):
        python_step.labels_path(escape, tmp_path)
    with pytest.raises(AdapterConfigError, match="cannot read label file"):
        python_step.read_labels(tmp_path / "missing.txt")


def test_initialize_needs_a_function(tmp_path: Path, pb: ModuleType) -> None:
    config = step_config("s", "tritonkit.processing.steps:classify_top_k", *POST_IO)
    del config["parameters"]["function"]
    with pytest.raises(AdapterConfigError, match="no 'function' parameter"):
        load_model(tmp_path, config)


def test_execute_answers_each_request(tmp_path: Path, pb: ModuleType) -> None:
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\n", encoding="utf-8")
    model = load_model(tmp_path, step_config(
        "post", "tritonkit.processing.steps:classify_top_k", *POST_IO, top_k="2",
        labels_file="labels.txt"))
    good = np.array([[0, 3, 1, 2]], np.float32)
    nan = np.array([[0, 3, 1, 2], [np.nan, 0, 0, 0]], np.float32)
    responses = model.execute([standin.request(LOGITS=good), standin.request(LOGITS=nan),
                               standin.request(LOGITS=np.tile(good, (3, 1)))])
    assert len(responses) == 3
    first = responses[0].as_dict()
    assert first["LABELS"].dtype == np.object_
    assert first["LABELS"].tolist() == [[b"b", b"d"]]
    assert first["CLASS_INDICES"].dtype == np.int32
    assert first["SCORES"].dtype == np.float32
    assert responses[2].as_dict()["LABELS"].shape == (3, 2)
    error = responses[1].error()
    assert error.code() == pb.TritonError.INVALID_ARG
    message = "input 'LOGITS' contains NaN in row(s) 1; only finite values are accepted"
    assert error.message() == message
    assert ("warn", f"post: request 1 of the batch failed: {message}") in pb.Logger.lines


def test_execute_preprocess_step_with_bad_image(tmp_path: Path, pb: ModuleType) -> None:
    model = load_model(tmp_path, step_config(
        "pre", "tritonkit.processing.steps:preprocess_images",
        [{"name": "IMAGE", "data_type": "TYPE_STRING", "dims": [1]}],
        [{"name": "PIXELS", "data_type": "TYPE_FP32", "dims": [1, 8, 8]}],
        height="8", width="8", channels="1", mean="0.0", std="1.0"))
    images = [np.array([[png(0)], [png(255)]], dtype=object),
              np.array([[b"\x89PNG\r\n\x1a\n broken"]], dtype=object)]
    ok, bad = model.execute([standin.request(IMAGE=images[0]), standin.request(IMAGE=images[1])])
    np.testing.assert_allclose(ok.as_dict()["PIXELS"][:, 0, 0, 0], [0.0, 1.0])
    assert bad.error().code() == pb.TritonError.INVALID_ARG
    assert bad.error().message().startswith("row 0: PNG header is truncated or corrupt")


def test_execute_never_raises(tmp_path: Path, pb: ModuleType) -> None:
    model = load_model(tmp_path, step_config("boom", f"{__name__}:boom", *POST_IO))
    responses = model.execute([standin.request(LOGITS=np.zeros((1, 4), np.float32))] * 2)
    assert [r.error().code() for r in responses] == [pb.TritonError.INTERNAL] * 2
    assert "MemoryError: out of memory in the step" in responses[0].error().message()
    assert pb.Logger.lines[-1][0] == "error"


def test_missing_output_is_an_internal_error(tmp_path: Path, pb: ModuleType) -> None:
    model = load_model(tmp_path, step_config("wrong", f"{__name__}:wrong_outputs", *POST_IO))
    (response,) = model.execute([standin.request(LOGITS=np.zeros((1, 4), np.float32))])
    assert response.error().code() == pb.TritonError.INTERNAL
    assert "no output 'LABELS'" in response.error().message()


def test_error_code_falls_back_without_codes(pb: ModuleType, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    class OldTritonError:  # before error codes existed: message only
        def __init__(self, message: str) -> None:
            self.text = message

    monkeypatch.setattr(pb, "TritonError", OldTritonError)
    response = python_step.error_response("bad", python_step.ErrorKind.INVALID_INPUT)
    assert response.error().text == "bad"


def test_shim_model_py_exposes_the_class(tmp_path: Path) -> None:
    """The stub execs model.py from its path and looks up TritonPythonModel in its namespace."""
    import importlib.util

    shim = tmp_path / "model.py"
    shim.write_text("from tritonkit.runtime.python_step import TritonPythonModel  # noqa: F401\n")
    spec = importlib.util.spec_from_file_location("model_under_test", shim)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.TritonPythonModel is python_step.TritonPythonModel


TOKENIZE_IO = (
    [{"name": "TEXT", "data_type": "TYPE_STRING", "dims": [1]}],
    [{"name": "INPUT_IDS", "data_type": "TYPE_INT64", "dims": [-1]},
     {"name": "ATTENTION_MASK", "data_type": "TYPE_INT64", "dims": [-1]},
     {"name": "TOKEN_TYPE_IDS", "data_type": "TYPE_INT64", "dims": [-1]}],
)


def tokenize_config() -> dict:
    return step_config("text_tokenize", "tritonkit.processing.steps:tokenize_text", *TOKENIZE_IO,
                       tokenizer_dir="assets/tokenizer", max_length="6", text_inputs="TEXT")


def test_initialize_loads_the_tokenizer_from_the_model_directory(
        tmp_path: Path, pb: ModuleType, tokenizer_dir: Path) -> None:  # noqa: F811
    import shutil

    shutil.copytree(tokenizer_dir, tmp_path / "assets" / "tokenizer")
    model = load_model(tmp_path, tokenize_config())
    assert model.context.model_dir == tmp_path
    assert model.context.preparation is not None  # loaded in initialize, not on first request
    shutil.rmtree(tmp_path / "assets")  # nothing is read from disk per request
    (response,) = model.execute([standin.request(TEXT=np.array([[b"hello world"]],
                                                               dtype=object))])
    assert response.as_dict()["INPUT_IDS"].tolist() == [[2, 4, 5, 3]]


@pytest.mark.parametrize("breakage", ["missing", "broken"])
def test_initialize_fails_when_the_tokenizer_is_missing_or_broken(
        tmp_path: Path, pb: ModuleType, tokenizer_dir: Path, breakage: str) -> None:  # noqa: F811
    import shutil

    shutil.copytree(tokenizer_dir, tmp_path / "assets" / "tokenizer")
    tokenizer_file = tmp_path / "assets" / "tokenizer" / "tokenizer.json"
    if breakage == "missing":
        tokenizer_file.unlink()
    else:
        tokenizer_file.write_text("{truncated")
    with pytest.raises(AdapterConfigError) as info:
        load_model(tmp_path, tokenize_config())
    message = str(info.value)
    assert message.startswith(
        "text_tokenize: tritonkit.processing.steps:tokenize_text cannot serve: ")
    assert "TokenizerLoadError" in message and "'tokenizer_dir'" in message
    assert str(tokenizer_file) in message
