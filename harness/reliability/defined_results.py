"""Edge inputs that are valid and have a defined answer: they must succeed, not fail.

The bad-input corpus (`harness.reliability.corpus`) proves that invalid input is refused; these
cases prove the other side of the line, chosen by what an input carries:

- text: an empty string embeds (the tokenizer yields [CLS][SEP]); a very long text is
  truncated to the model's maximum length, so appending more words changes nothing;
- images: a blank image without any object gives a detector 0 detections, and any image
  model an answer with finite numbers.

Like the corpus, they are generated from the repository's configs, so new pipelines join
without a line changed here; they run over HTTP and gRPC next to the corpus.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from examples.model_zoo.shapes import blank_image
from harness.reliability.corpus import with_element
from harness.reliability.corpus_runner import same_answer
from harness.reliability.targets import InputKind, ModelTarget, TensorInfo
from harness.reliability.wire import Protocol, RawRequest, WireClient

# Far above any BERT-family maximum length (512 tokens): truncation must happen.
LONG_TEXT_WORDS = 3000
NUM_DETECTIONS = "NUM_DETECTIONS"

Outputs = Mapping[str, np.ndarray]


@dataclass(frozen=True, kw_only=True)
class DefinedResultCase:
    case: str
    model: str
    description: str
    request: RawRequest
    # Why the answer is wrong, or "" when it is right.
    check: Callable[[Outputs], str]
    # When set, the answer must equal the answer to this request.
    same_as: RawRequest | None = None


@dataclass(frozen=True, kw_only=True)
class DefinedOutcome:
    case: str
    model: str
    protocol: Protocol
    description: str
    passed: bool
    problem: str  # "" when passed


def finite_outputs(outputs: Outputs) -> str:
    for name, array in outputs.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            return f"output {name!r} holds NaN or Inf"
    return ""


def no_detections(outputs: Outputs) -> str:
    problem = finite_outputs(outputs)
    if problem:
        return problem
    count = outputs.get(NUM_DETECTIONS)
    if count is None:
        return f"no {NUM_DETECTIONS} output"
    if int(np.asarray(count).sum()) != 0:
        return f"{int(np.asarray(count).sum())} detections on an image without objects"
    return ""


def long_text(words: int = LONG_TEXT_WORDS, *, offset: int = 0) -> bytes:
    vocabulary = ("serving", "models", "with", "triton", "needs", "careful", "batching",
                  "and", "honest", "measurements", "of", "latency")
    return " ".join(vocabulary[(i + offset) % len(vocabulary)]
                    for i in range(words)).encode()


def _text_cases(target: ModelTarget, tensor: TensorInfo) -> list[DefinedResultCase]:
    text = long_text()
    longer = text + b" " + long_text(1000, offset=5)
    return [
        DefinedResultCase(
            case="text_empty", model=target.name, description=f"{tensor.name!r}: empty string",
            request=with_element(target, tensor, b""), check=finite_outputs),
        DefinedResultCase(
            case="text_very_long", model=target.name,
            description=(f"{tensor.name!r}: {LONG_TEXT_WORDS} words, truncated to the model's "
                         "maximum length: 1000 more words change nothing"),
            request=with_element(target, tensor, text), check=finite_outputs,
            same_as=with_element(target, tensor, longer)),
    ]


def _image_cases(target: ModelTarget, tensor: TensorInfo) -> list[DefinedResultCase]:
    detector = any(o.name == NUM_DETECTIONS for o in target.outputs)
    return [DefinedResultCase(
        case="image_without_objects", model=target.name,
        description=(f"{tensor.name!r}: a blank image" +
                     (" gives 0 detections" if detector else " gives finite numbers")),
        request=with_element(target, tensor, blank_image()),
        check=no_detections if detector else finite_outputs)]


_BY_KIND: dict[InputKind, Callable[[ModelTarget, TensorInfo], list[DefinedResultCase]]] = {
    InputKind.TEXT: _text_cases,
    InputKind.IMAGE: _image_cases,
}


def defined_result_cases(targets: Sequence[ModelTarget]) -> list[DefinedResultCase]:
    return [case for target in targets for tensor in target.inputs
            for case in _BY_KIND.get(tensor.kind, lambda *_: [])(target, tensor)]


def run_defined_case(client: WireClient, case: DefinedResultCase,
                     protocol: Protocol) -> DefinedOutcome:
    def outcome(problem: str) -> DefinedOutcome:
        return DefinedOutcome(case=case.case, model=case.model, protocol=protocol,
                              description=case.description, passed=not problem,
                              problem=problem)

    answer = client.send(case.request, protocol)
    if not answer.ok:
        return outcome(f"refused: {answer.status} {answer.message[:200]}")
    problem = case.check(answer.outputs)
    if problem or case.same_as is None:
        return outcome(problem)
    other = client.send(case.same_as, protocol)
    if not other.ok:
        return outcome(f"reference request refused: {other.status} {other.message[:200]}")
    if not same_answer(answer.outputs, other.outputs):
        return outcome("the answer changed with text beyond the maximum length")
    return outcome("")


def run_defined_cases(client: WireClient, cases: Sequence[DefinedResultCase],
                      protocols: Sequence[Protocol] = tuple(Protocol),
                      ) -> tuple[DefinedOutcome, ...]:
    return tuple(run_defined_case(client, case, protocol)
                 for protocol in protocols for case in cases)
