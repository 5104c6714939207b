"""The deadline and bookkeeping of `wait_until_ready` (no server, real clocks)."""

from __future__ import annotations

import time

import pytest
from tritonkit_client._readiness import MIN_CALL_TIMEOUT_S, ReadinessDeadline
from tritonkit_client.errors import ClientTimeoutError, InvalidInputError, ServerUnavailableError


def deadline(timeout_s: float, *, request_timeout_s: float = 60.0) -> ReadinessDeadline:
    return ReadinessDeadline(
        url="grpc://h:1",
        timeout_s=timeout_s,
        poll_interval_s=0.25,
        request_timeout_s=request_timeout_s,
    )


def test_pauses_until_ready_or_the_deadline() -> None:
    wait = deadline(10.0)
    assert wait.pause_s([], None) is None  # nothing missing: done
    assert wait.pause_s(["server"], None) == pytest.approx(0.25)
    short = deadline(0.1)
    assert 0 < (short.pause_s(["model 'm'"], None) or 0) <= 0.1
    time.sleep(0.12)
    last = ServerUnavailableError("readiness check at grpc://h:1: cannot connect")
    with pytest.raises(ClientTimeoutError) as info:
        short.pause_s(["server"], last)
    assert str(info.value) == (
        "grpc://h:1: not ready after 0.1s: server not ready "
        "(last error: readiness check at grpc://h:1: cannot connect)"
    )


def test_call_timeout_is_cut_to_the_time_left() -> None:
    assert deadline(10.0, request_timeout_s=2.0).call_timeout_s() == 2.0
    assert 0.5 < deadline(1.0).call_timeout_s() <= 1.0
    expired = deadline(0.0)
    assert expired.call_timeout_s() == MIN_CALL_TIMEOUT_S


def test_only_not_ready_errors_are_waited_out() -> None:
    wait = deadline(1.0)
    error = wait.not_ready_error(ConnectionRefusedError(111, "Connection refused"))
    assert isinstance(error, ServerUnavailableError)
    assert str(error).startswith("readiness check at grpc://h:1: cannot connect")
    invalid = InvalidInputError("bad")
    with pytest.raises(InvalidInputError) as info:
        wait.not_ready_error(invalid)
    assert info.value is invalid
