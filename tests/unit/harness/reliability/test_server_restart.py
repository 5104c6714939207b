from __future__ import annotations

import math
import socket
import threading
import time

import pytest
from tritonkit_client import Classification, Protocol, RetryPolicy, ServerUnavailableError
from tritonkit_client.options import call_with_retry

from harness.reliability.errors import ReliabilityError
from harness.reliability.server_restart import (
    ClientSettings,
    ExpectedAnswer,
    Ledger,
    Outcome,
    RequestRecord,
    RestartTimeline,
    RetryCounter,
    StopMode,
    _drive,
    _wait_ports_free,
    _Work,
    distinct_messages,
    summarize,
)
from tritonkit.server.ports import pick_free_ports


def _record(outcome: Outcome, ended_at: float, *, retries: int = 0, message: str = "",
            error_type: str = "", protocol: Protocol = Protocol.GRPC) -> RequestRecord:
    return RequestRecord(worker=0, protocol=protocol, started_at=ended_at - 0.01,
                         ended_at=ended_at, outcome=outcome, retries=retries,
                         error_type=error_type, message=message)


def test_retry_counter_counts_the_retries_of_the_calling_thread() -> None:
    attempts = []

    def refused() -> None:
        attempts.append(1)
        raise ConnectionRefusedError(111, "Connection refused")

    policy = RetryPolicy(retries=3, backoff_s=0.0)
    with RetryCounter() as counter:
        with pytest.raises(ServerUnavailableError):
            call_with_retry(refused, policy=policy, context="infer", sleep=lambda s: None)
        other: list[int] = []
        thread = threading.Thread(target=lambda: other.append(counter.count()))
        thread.start()
        thread.join()
        assert counter.count() == 3 and len(attempts) == 4
        assert len(counter.messages()) == 3 and "Connection refused" in counter.messages()[0]
        assert other == [0]
    with pytest.raises(ServerUnavailableError):  # detached: no longer counted
        call_with_retry(refused, policy=policy, context="infer", sleep=lambda s: None)
    assert counter.total() == 3


def test_ledger_counts_unrecorded_requests_as_lost() -> None:
    ledger = Ledger()
    first, second = ledger.issue(), ledger.issue()
    ledger.record(first, _record(Outcome.CORRECT, 1.0))
    assert ledger.issued == 2 and ledger.unrecorded() == 1 and ledger.in_flight() == 1
    with pytest.raises(ReliabilityError, match="recorded twice"):
        ledger.record(first, _record(Outcome.CORRECT, 1.0))
    ledger.record(second, _record(Outcome.EXPLICIT_ERROR, 2.0))
    assert ledger.unrecorded() == 0 and len(ledger.records()) == 2


def test_expected_answer_compares_indices_and_scores() -> None:
    answer = [Classification(label="3", score=0.9, index=3),
              Classification(label="8", score=0.05, index=8)]
    expected = ExpectedAnswer.of(answer)
    assert expected.matches(answer)
    assert not expected.matches(list(reversed(answer)))
    assert not expected.matches([Classification(label="3", score=0.8, index=3), answer[1]])


def test_summarize_accounts_for_every_request() -> None:
    timeline = RestartTimeline(signal_at=10.0, stopped_at=12.0, ports_free_at=12.5,
                               ready_at=20.0)
    records = [
        _record(Outcome.CORRECT, 9.0),
        _record(Outcome.CORRECT, 9.5),
        _record(Outcome.CORRECT, 11.0, retries=0),  # finished during the graceful stop
        _record(Outcome.EXPLICIT_ERROR, 15.0, retries=2, error_type="ServerUnavailableError",
                message="infer 'digits' at grpc://x: connection refused"),
        _record(Outcome.CORRECT, 21.5, retries=4),
        _record(Outcome.CORRECT, 22.0, retries=1, protocol=Protocol.HTTP),
        _record(Outcome.WRONG_ANSWER, 23.0),
    ]
    retried = ["infer 'digits': connection refused (retry 1/12 in 0.15s)",
               "infer 'digits': connection refused (retry 2/12 in 0.31s)"]
    result = summarize(mode=StopMode.SIGTERM, concurrency=2, settings=ClientSettings(),
                       records=records, issued=8, in_flight_at_stop=2, timeline=timeline,
                       retry_messages=retried)
    assert (result.requests, result.succeeded, result.explicit_failures) == (8, 5, 1)
    assert (result.lost, result.wrong_answers, result.untranslated_errors) == (1, 1, 0)
    assert (result.retried, result.retries) == (3, 7)
    assert (result.outage_s, result.stop_s, result.port_wait_s, result.start_s) == (
        10.0, 2.0, 0.5, 7.5)
    assert result.client_gap_s == pytest.approx(10.5)  # 11.0 -> 21.5
    assert result.served_during_stop == 1
    assert result.first_success_after_restart_s == pytest.approx(1.5)
    assert result.failures_by_type == {"grpc:ServerUnavailableError": 1}
    assert result.failure_messages[0].count == 1
    assert [(m.message, m.count) for m in result.retry_messages] == [
        ("infer 'digits': connection refused", 2)]
    assert not result.accounted


def test_summarize_without_success_after_restart() -> None:
    timeline = RestartTimeline(signal_at=1.0, stopped_at=2.0, ports_free_at=2.0, ready_at=3.0)
    result = summarize(mode=StopMode.SIGKILL, concurrency=1, settings=ClientSettings(),
                       records=[_record(Outcome.CORRECT, 0.5)], issued=1, in_flight_at_stop=0,
                       timeline=timeline)
    assert result.first_success_after_restart_s is None and math.isnan(result.client_gap_s)
    assert result.accounted


def test_distinct_messages_most_frequent_first() -> None:
    found = distinct_messages(["b", "a", "b", "c" * 500], limit=2, width=10)
    assert [(m.message, m.count) for m in found] == [("b", 2), ("a", 1)]


def test_worst_case_request_includes_every_attempt_and_backoff() -> None:
    settings = ClientSettings(timeout_s=2.0,
                              retry=RetryPolicy(retries=3, backoff_s=1.0, max_backoff_s=3.0))
    assert settings.worst_case_request_s() == pytest.approx(2.0 * 4 + 1.0 + 2.0 + 3.0)
    with pytest.raises(ReliabilityError):
        ClientSettings(protocols=())


def test_wait_ports_free_gives_up_on_a_listening_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(ReliabilityError, match=str(port)):
            _wait_ports_free([port], timeout_s=0.3)
    _wait_ports_free([port], timeout_s=5.0)


@pytest.mark.parametrize("protocol", [Protocol.GRPC, Protocol.HTTP])
def test_drive_records_refused_requests_as_explicit_errors(protocol: Protocol) -> None:
    """No server on the port: every request ends as ServerUnavailableError after its retry."""
    (port,) = pick_free_ports(1)
    settings = ClientSettings(protocols=(protocol,), timeout_s=2.0,
                              retry=RetryPolicy(retries=1, backoff_s=0.0))
    ledger, stop = Ledger(), threading.Event()
    with RetryCounter() as counter:
        work = _Work(pipeline="digits", images=[b"png"], expected=[ExpectedAnswer.of([])],
                     settings=settings, ledger=ledger, retries=counter, stop=stop,
                     on_success=lambda: None)
        thread = threading.Thread(target=_drive,
                                  args=(0, f"{protocol.value}://127.0.0.1:{port}", protocol, work))
        thread.start()
        time.sleep(0.3)
        stop.set()
        thread.join(10)
    records = ledger.records()
    assert not thread.is_alive() and records and ledger.unrecorded() == 0
    assert {r.outcome for r in records} == {Outcome.EXPLICIT_ERROR}
    assert {r.error_type for r in records} == {"ServerUnavailableError"}
    assert {r.retries for r in records} == {1}
