from __future__ import annotations

from pathlib import Path

from harness.reliability.corpus import Origin, cases_for, corpus
from harness.reliability.corpus_runner import judge
from harness.reliability.targets import InputKind, ModelTarget, TensorInfo, load_targets
from harness.reliability.wire import Protocol, WireAnswer

REPO_ROOT = Path(__file__).resolve().parents[4]


def _target(kind: InputKind, datatype: str, name: str) -> ModelTarget:
    return ModelTarget(name="m", max_batch_size=8, ensemble=False, python_backend=True,
                       inputs=(TensorInfo(name=name, datatype=datatype, dims=(1,), kind=kind),),
                       outputs=())


def test_cases_follow_input_kind() -> None:
    image = {c.case for c in cases_for(_target(InputKind.IMAGE, "BYTES", "IMAGE"))}
    text = {c.case for c in cases_for(_target(InputKind.TEXT, "BYTES", "TEXT"))}
    floats = {c.case for c in cases_for(_target(InputKind.FLOAT, "FP32", "X"))}
    assert "image_huge_header" in image and "text_invalid_utf8" not in image
    assert "text_invalid_utf8" in text and "nan" not in text
    assert {"nan", "positive_inf", "negative_inf", "batch_above_max"} <= floats


def test_example_repository_has_30_distinct_cases() -> None:
    cases = corpus(load_targets(REPO_ROOT / "model_repository"))
    assert len({c.case for c in cases}) >= 30


def test_judge_requires_invalid_argument_for_step_cases() -> None:
    (case,) = [c for c in cases_for(_target(InputKind.FLOAT, "FP32", "X")) if c.case == "nan"]
    assert case.origin is Origin.STEP
    message = "input 'X' contains NaN in row(s) 0; only finite values are accepted"
    good = WireAnswer(ok=False, status="INVALID_ARGUMENT", message=message, seconds=0.0)
    assert judge(case, Protocol.GRPC, good) == ""
    internal = WireAnswer(ok=False, status="500", message=message, seconds=0.0)
    assert "expected 400" in judge(case, Protocol.HTTP, internal)
    accepted = WireAnswer(ok=True, status="200", message="", seconds=0.0)
    assert judge(case, Protocol.HTTP, accepted) == "the server accepted the request"
