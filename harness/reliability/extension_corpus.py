"""The protocol-extension corpus: every output of every model and ensemble asked for with the
KServe extensions' parameters at their edges (classification class counts, binary-data flags,
request parameters of every JSON type, priority and timeout extremes, sequence parameters on
models that are not sequence models), over HTTP and gRPC.

Not every case is an error: each answer is recorded, and what must hold is that the server
stays live after every one. Answers of HTTP 500 (Triton's core on a malformed parameter) are
counted apart. On a server without the classification fixes (`tritonkit.releases.
CLASSIFICATION_BYTES_FIX`), classification on a BYTES output ends the server with SIGFPE:
those cases are recorded as known crashes and not sent.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

from harness.reliability.corpus import valid_request
from harness.reliability.targets import ModelTarget, TensorInfo
from harness.reliability.wire import NotRepresentable, Protocol, RawRequest, WireClient

# Triton 2.59.1 (r25.07) has server PR #8267: classification on a BYTES output is refused
CLASSIFICATION_CRASH_FIXED_IN = (2, 59, 1)
INT64_MAX = 2**63 - 1

CLASS_COUNTS: dict[str, object] = {
    "classification_0": 0, "classification_1": 1, "classification_large": 1_000_000,
    "classification_int64_max": INT64_MAX, "classification_negative": -1,
    "classification_non_integer": 1.5, "classification_string": "3",
}
BINARY_FLAGS: dict[str, object] = {
    "binary_data_false": False, "binary_data_true": True, "binary_data_string": "yes",
    "binary_data_size_on_output": 7,
}
REQUEST_PARAMETERS: dict[str, dict[str, object]] = {
    "parameter_string": {"x_custom": "text"}, "parameter_int": {"x_custom": 7},
    "parameter_float": {"x_custom": 0.5}, "parameter_bool": {"x_custom": True},
    "parameter_null": {"x_custom": None}, "parameter_list": {"x_custom": [1, 2]},
    "parameter_object": {"x_custom": {"a": 1}},
    "priority_0": {"priority": 0}, "priority_max": {"priority": INT64_MAX},
    "priority_negative": {"priority": -1},
    "timeout_0": {"timeout": 0}, "timeout_max": {"timeout": INT64_MAX},
    "timeout_negative": {"timeout": -1},
    "sequence_start": {"sequence_id": 1, "sequence_start": True},
    "sequence_end_only": {"sequence_id": 2, "sequence_end": True},
    "sequence_id_string": {"sequence_id": "abc", "sequence_start": True},
}


@dataclass(frozen=True, kw_only=True)
class ExtensionCase:
    case: str
    model: str
    output: str  # "" for request-level parameters
    request: RawRequest
    on_bytes_output: bool  # classification asked of a BYTES output


@dataclass(frozen=True, kw_only=True)
class ExtensionOutcome:
    case: str
    model: str
    output: str
    protocol: Protocol
    sent: bool
    status: str  # "200"/"OK", an error status, "not sent"
    message: str
    live_after: bool
    note: str = ""  # why it was not sent


@dataclass(frozen=True, kw_only=True)
class ExtensionResult:
    outcomes: tuple[ExtensionOutcome, ...]

    @property
    def server_deaths(self) -> int:
        return sum(not o.live_after for o in self.outcomes)

    @property
    def internal_errors(self) -> tuple[ExtensionOutcome, ...]:
        """Answers of HTTP 500 / gRPC INTERNAL: a malformed parameter Triton's core does not
        refuse as the client's error."""
        return tuple(o for o in self.outcomes if o.status in ("500", "INTERNAL"))

    @property
    def known_crashes(self) -> tuple[ExtensionOutcome, ...]:
        return tuple(o for o in self.outcomes if o.note.startswith("known crash"))


def _output_case(target: ModelTarget, base: RawRequest, output: TensorInfo, name: str,
                 parameters: dict[str, object]) -> ExtensionCase:
    request = RawRequest(model=target.name, inputs=base.inputs, outputs=(output.name,),
                         output_parameters={output.name: parameters})
    return ExtensionCase(case=name, model=target.name, output=output.name, request=request,
                         on_bytes_output=output.datatype == "BYTES"
                         and "classification" in parameters)


def extension_cases(targets: Iterable[ModelTarget]) -> list[ExtensionCase]:
    cases: list[ExtensionCase] = []
    for target in targets:
        base = valid_request(target)
        for output in target.outputs:
            cases += [_output_case(target, base, output, name, {"classification": count})
                      for name, count in CLASS_COUNTS.items()]
            cases += [_output_case(target, base, output, name, {
                "binary_data_size" if name == "binary_data_size_on_output" else "binary_data":
                    flag}) for name, flag in BINARY_FLAGS.items()]
        cases += [ExtensionCase(case=name, model=target.name, output="", on_bytes_output=False,
                                request=RawRequest(model=target.name, inputs=base.inputs,
                                                   parameters=parameters))
                  for name, parameters in REQUEST_PARAMETERS.items()]
    return cases


def server_version(http_url: str) -> tuple[int, ...]:
    with urllib.request.urlopen(f"{http_url}/v2", timeout=10) as answer:
        version = str(json.loads(answer.read())["version"])
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def run_extension_cases(client: WireClient, cases: Iterable[ExtensionCase],
                        protocols: Iterable[Protocol], *, http_url: str) -> ExtensionResult:
    """Send every case over every protocol; classification on BYTES outputs only where the
    server has the fix. Liveness is checked after each case."""
    crashes_on_bytes = server_version(http_url) < CLASSIFICATION_CRASH_FIXED_IN
    outcomes = []
    for case in cases:
        for protocol in protocols:
            if case.on_bytes_output and crashes_on_bytes:
                outcomes.append(ExtensionOutcome(
                    case=case.case, model=case.model, output=case.output, protocol=protocol,
                    sent=False, status="not sent", message="", live_after=True,
                    note="known crash: classification on a BYTES output ends this server "
                         "(SIGFPE); fixed in Triton 2.59.1 and later"))
                continue
            try:
                answer = client.send(case.request, protocol)
            except NotRepresentable as e:
                outcomes.append(ExtensionOutcome(
                    case=case.case, model=case.model, output=case.output, protocol=protocol,
                    sent=False, status="not sent", message="", live_after=True,
                    note=f"not expressible over {protocol.value}: {e}"))
                continue
            live = client.http_get("/v2/health/live") == 200
            if not live:  # a death takes a moment to show: look again before counting it
                time.sleep(0.5)
                live = client.http_get("/v2/health/live") == 200
            outcomes.append(ExtensionOutcome(
                case=case.case, model=case.model, output=case.output, protocol=protocol,
                sent=True, status=answer.status, message=answer.message[:300], live_after=live))
            if not live:
                return ExtensionResult(outcomes=tuple(outcomes))
    return ExtensionResult(outcomes=tuple(outcomes))
