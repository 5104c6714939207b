"""Malformed requests in the middle of sustained valid load to the same model.

The corpus sends each bad request next to a few valid ones; this keeps several clients
sending valid requests for a while and others sending one malformed request over and over,
so the two meet in the same dynamic batches many times, in every way the batcher can form
them (fresh batches, batches grown while waiting for an instance). Every valid request must
come back with its usual answer, every malformed one with an error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from harness.reliability.corpus import BadInputCase, valid_request
from harness.reliability.corpus_runner import same_answer
from harness.reliability.targets import ModelTarget
from harness.reliability.wire import Protocol, WireClient

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class MixedLoadResult:
    model: str
    case: str
    protocol: Protocol
    seconds: float
    valid_sent: int
    valid_failed: int  # an error, or an answer different from the one sent alone
    malformed_sent: int
    malformed_accepted: int  # answered as if valid: must be 0
    failure_messages: dict[str, int]  # valid requests' errors, first 160 characters


@dataclass
class _Tally:
    valid_sent: int = 0
    valid_failed: int = 0
    malformed_sent: int = 0
    malformed_accepted: int = 0
    messages: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def malformed_under_load(http_url: str, grpc_url: str, target: ModelTarget,
                         case: BadInputCase, protocol: Protocol, *, seconds: float = 5.0,
                         valid_clients: int = 6, malformed_clients: int = 2) -> MixedLoadResult:
    """Send `case` from `malformed_clients` clients while `valid_clients` clients send valid
    requests to the same model, for `seconds`; count what went wrong."""
    valid = valid_request(target)
    with WireClient(http_url=http_url, grpc_url=grpc_url) as client:
        alone = client.send(valid, protocol)
    if not alone.ok:
        raise ValueError(f"{target.name}: the generated valid request is refused alone "
                         f"({alone.status} {alone.message[:200]})")
    expected: dict[str, np.ndarray] = alone.outputs
    tally = _Tally()
    deadline = time.monotonic() + seconds

    def run(malformed: bool) -> None:
        with WireClient(http_url=http_url, grpc_url=grpc_url) as own:
            while time.monotonic() < deadline:
                answer = own.send(case.request if malformed else valid, protocol)
                with tally.lock:
                    if malformed:
                        tally.malformed_sent += 1
                        tally.malformed_accepted += answer.ok
                    else:
                        tally.valid_sent += 1
                        if not answer.ok or not same_answer(expected, answer.outputs):
                            tally.valid_failed += 1
                            tally.messages[(answer.message or "different answer")[:160]] += 1

    threads = [threading.Thread(target=run, args=(False,), name=f"valid-{i}")
               for i in range(valid_clients)]
    threads += [threading.Thread(target=run, args=(True,), name=f"malformed-{i}")
                for i in range(malformed_clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = MixedLoadResult(
        model=target.name, case=case.case, protocol=protocol,
        seconds=time.monotonic() - started, valid_sent=tally.valid_sent,
        valid_failed=tally.valid_failed, malformed_sent=tally.malformed_sent,
        malformed_accepted=tally.malformed_accepted, failure_messages=dict(tally.messages))
    log.info("%s over %s, %s under load: %d/%d valid failed, %d malformed sent",
             target.name, protocol.value, case.case, result.valid_failed, result.valid_sent,
             result.malformed_sent)
    return result
