"""The sync client against real refusing and silent sockets (no server): retries, timeouts,
readiness waits, and checks made before any I/O."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from tritonkit_client.errors import (
    ClientError,
    ClientTimeoutError,
    InvalidInputError,
    InvalidURLError,
    ServerUnavailableError,
)
from tritonkit_client.options import Endpoint, Protocol
from tritonkit_client.sync_client import TritonClient, connect


def test_connect_rejects_bad_urls_before_any_io() -> None:
    with pytest.raises(InvalidURLError, match="http://host:port or grpc://host:port"):
        connect("tcp://127.0.0.1:8000")


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_refused_connection_is_retried_then_unavailable(
    scheme: str, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{scheme}://127.0.0.1:{closed_port}"
    caplog.set_level(logging.WARNING, logger="tritonkit_client.options")
    with connect(url, timeout_s=2, retries=2, backoff_s=0.01) as client:
        assert client.url == url
        with pytest.raises(ServerUnavailableError) as info:
            client.is_live()
    assert url in str(info.value)
    assert "refused" in str(info.value).lower()
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert [r.getMessage().split("(retry ")[1][:3] for r in retries] == ["1/2", "2/2"]


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_silent_server_times_out_after_timeout_s(scheme: str, silent_port: int) -> None:
    client = connect(f"{scheme}://127.0.0.1:{silent_port}", timeout_s=0.3, retries=3)
    started = time.monotonic()
    with pytest.raises(ClientTimeoutError):
        client.is_ready()
    elapsed = time.monotonic() - started
    assert 0.2 < elapsed < 2.0  # one attempt: timeouts are not retried
    client.close()


def test_wait_until_ready_names_what_was_not_ready(closed_port: int) -> None:
    client = connect(f"grpc://127.0.0.1:{closed_port}", timeout_s=0.5, retries=0)
    started = time.monotonic()
    with pytest.raises(ClientTimeoutError) as info:
        client.wait_until_ready(models=["digits"], timeout_s=0.4, poll_interval_s=0.05)
    assert 0.35 < time.monotonic() - started < 3.0
    message = str(info.value)
    assert "not ready after 0.4s" in message
    assert "server not ready" in message
    assert "ServerUnavailable" not in message and "refused" in message.lower()
    client.close()


def test_infer_validates_inputs_before_any_io(closed_port: int) -> None:
    client = connect(f"http://127.0.0.1:{closed_port}", retries=0)
    with pytest.raises(InvalidInputError):
        client.infer("m", {"X": np.float32(3.0)})  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError, match="disagree"):
        client.infer_batched("m", {"a": np.zeros((2, 1)), "b": np.zeros((3, 1))}, max_batch_size=1)
    with pytest.raises(InvalidInputError, match="disagree"):  # before asking for max_batch_size
        client.infer_batched("m", {"a": np.zeros((2, 1)), "b": np.zeros((3, 1))})
    with pytest.raises(InvalidInputError, match="max_batch_size must be >= 0"):
        client.infer_batched("m", {"a": np.zeros((2, 1))}, max_batch_size=-1)
    client.close()
    client.close()  # closing twice is harmless


def test_client_is_constructible_from_an_endpoint(closed_port: int) -> None:
    client = TritonClient(Endpoint(protocol=Protocol.HTTP, host="127.0.0.1", port=closed_port))
    assert client.options.timeout_s == 60.0
    client.close()


def test_a_closed_client_refuses_calls(closed_port: int) -> None:
    client = connect(f"grpc://127.0.0.1:{closed_port}")
    client.close()
    with pytest.raises(ClientError, match="closed"):
        client.is_live()
