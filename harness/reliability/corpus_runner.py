"""Run the bad-input corpus over HTTP and gRPC: each bad request is sent together with valid
requests to the same model (so they can share its dynamic batch), then the server's liveness
and readiness are checked.

A case passes when its answer is an error whose message matches the case's `expect`, with
400 / INVALID_ARGUMENT for the toolkit's own rejections; the valid requests sent alongside
must succeed with the same answer as when sent alone (`collateral_failures` counts those
that did not).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from harness.reliability.corpus import BadInputCase, Origin, valid_request
from harness.reliability.targets import ModelTarget
from harness.reliability.wire import Protocol, RawRequest, WireAnswer, WireClient

log = logging.getLogger(__name__)

INVALID_STATUSES = {Protocol.HTTP: "400", Protocol.GRPC: "INVALID_ARGUMENT"}
_CONNECTION_STATUSES = {"CONNECTION", "UNAVAILABLE", "503", "DEADLINE_EXCEEDED"}


@dataclass(frozen=True, kw_only=True)
class CaseOutcome:
    case: str
    model: str
    protocol: Protocol
    origin: Origin
    description: str
    status: str
    message: str
    clear: bool  # an error, naming the problem, with the required status
    problem: str  # why not clear ("" when clear)
    server_ready_after: bool
    collateral_sent: int
    collateral_failed: int
    seconds: float


@dataclass(frozen=True, kw_only=True)
class CorpusResult:
    outcomes: tuple[CaseOutcome, ...]

    @property
    def cases(self) -> int:
        return len(self.outcomes)

    @property
    def clear_errors(self) -> int:
        return sum(o.clear for o in self.outcomes)

    @property
    def distinct_cases(self) -> int:
        return len({o.case for o in self.outcomes})

    @property
    def server_crashes(self) -> int:
        return sum(not o.server_ready_after for o in self.outcomes)

    @property
    def collateral_failures(self) -> int:
        return sum(o.collateral_failed for o in self.outcomes)

    @property
    def unclear(self) -> tuple[CaseOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.clear)


def judge(case: BadInputCase, protocol: Protocol, answer: WireAnswer) -> str:
    """Why the answer is not a clear rejection of `case`, or "" when it is."""
    if answer.ok:
        return "the server accepted the request"
    if answer.status in _CONNECTION_STATUSES:
        return f"no answer from the server ({answer.status}: {answer.message})"
    if case.origin is Origin.STEP and answer.status != INVALID_STATUSES[protocol]:
        return f"status {answer.status}, expected {INVALID_STATUSES[protocol]}"
    if not any(re.search(p, answer.message, re.IGNORECASE) for p in case.expect):
        return f"message does not name the problem (expected one of {list(case.expect)})"
    return ""


def same_answer(expected: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> bool:
    if set(expected) != set(got):
        return False
    for name, want in expected.items():
        have = got[name]
        if want.shape != have.shape:
            return False
        if want.dtype == np.object_:
            if want.tolist() != have.tolist():
                return False
        elif not np.allclose(want, have, rtol=1e-3, atol=1e-4, equal_nan=False):
            return False
    return True


class CorpusRunner:
    """Runs cases against one server; `collateral` valid requests accompany each bad one."""

    def __init__(self, client: WireClient, targets: Sequence[ModelTarget], *,
                 collateral: int = 2) -> None:
        self.client = client
        self.targets = {t.name: t for t in targets}
        self.collateral = collateral
        self._baselines: dict[tuple[str, Protocol], dict[str, np.ndarray] | None] = {}
        self.without_collateral: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=collateral + 1,
                                        thread_name_prefix="corpus")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _valid(self, model: str) -> RawRequest:
        return valid_request(self.targets[model])

    def baseline(self, model: str, protocol: Protocol) -> dict[str, np.ndarray] | None:
        """The answer to the generated valid request, or None when the model refuses it
        (its inputs need meaning the config cannot tell, e.g. a detector head's layout):
        cases still run for it, without collateral requests."""
        key = (model, protocol)
        if key not in self._baselines:
            answer = self.client.send(self._valid(model), protocol)
            if not answer.ok:
                log.warning("no collateral checks for %s over %s: the generated valid request "
                            "was refused (%s %s)", model, protocol.value, answer.status,
                            answer.message[:200])
                self.without_collateral.add(model)
                self._baselines[key] = None
            else:
                self._baselines[key] = answer.outputs
        return self._baselines[key]

    def ready(self) -> bool:
        return (self.client.http_get("/v2/health/live") == 200
                and self.client.http_get("/v2/health/ready") == 200)

    def run_case(self, case: BadInputCase, protocol: Protocol) -> CaseOutcome:
        expected = self.baseline(case.model, protocol)
        valid = self._valid(case.model)
        count = self.collateral if expected is not None else 0
        barrier = threading.Barrier(count + 1)

        def send(request: RawRequest) -> WireAnswer:
            barrier.wait(timeout=30)
            return self.client.send(request, protocol)

        futures = [self._pool.submit(send, valid) for _ in range(count)]
        bad = send(case.request)
        good = [f.result() for f in futures]
        failed = [a for a in good
                  if not a.ok or expected is None or not same_answer(expected, a.outputs)]
        for answer in failed:
            log.warning("collateral failure next to %s/%s over %s: %s %s", case.model,
                        case.case, protocol.value, answer.status, answer.message or
                        "different answer")
        problem = judge(case, protocol, bad)
        return CaseOutcome(
            case=case.case, model=case.model, protocol=protocol, origin=case.origin,
            description=case.description, status=bad.status, message=bad.message[:400],
            clear=not problem, problem=problem, server_ready_after=self.ready(),
            collateral_sent=len(good), collateral_failed=len(failed), seconds=bad.seconds)

    def run(self, cases: Sequence[BadInputCase], protocols: Sequence[Protocol] = tuple(Protocol),
            *, on_outcome: Callable[[CaseOutcome], None] | None = None) -> CorpusResult:
        outcomes = []
        for protocol in protocols:
            for case in cases:
                outcome = self.run_case(case, protocol)
                if on_outcome is not None:
                    on_outcome(outcome)
                outcomes.append(outcome)
        return CorpusResult(outcomes=tuple(outcomes))
