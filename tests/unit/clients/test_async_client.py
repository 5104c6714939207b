"""The asyncio client against real refusing and silent sockets (no server)."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest
from tritonkit_client.async_client import AsyncTritonClient, connect_async
from tritonkit_client.errors import (
    ClientError,
    ClientTimeoutError,
    InvalidInputError,
    InvalidURLError,
    ServerUnavailableError,
)


def test_connect_async_needs_no_running_loop_and_checks_the_url() -> None:
    client = connect_async("grpc://127.0.0.1:1")
    assert isinstance(client, AsyncTritonClient)
    assert client.url == "grpc://127.0.0.1:1"
    asyncio.run(client.close())  # never used: nothing to close
    with pytest.raises(InvalidURLError):
        connect_async("127.0.0.1:8001")


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_refused_connection_is_retried_then_unavailable(
    scheme: str, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{scheme}://127.0.0.1:{closed_port}"
    caplog.set_level(logging.WARNING, logger="tritonkit_client.options")

    async def run() -> None:
        async with connect_async(url, timeout_s=2, retries=1, backoff_s=0.01) as client:
            await client.is_live()

    with pytest.raises(ServerUnavailableError) as info:
        asyncio.run(run())
    assert url in str(info.value)
    assert len([r for r in caplog.records if "retry 1/1" in r.getMessage()]) == 1


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_silent_server_times_out(scheme: str, silent_port: int) -> None:
    async def run() -> None:
        async with connect_async(f"{scheme}://127.0.0.1:{silent_port}", timeout_s=0.3) as client:
            await client.list_models()

    started = time.monotonic()
    with pytest.raises(ClientTimeoutError):
        asyncio.run(run())
    assert 0.2 < time.monotonic() - started < 2.0


def test_wait_until_ready_times_out_naming_the_server(closed_port: int) -> None:
    async def run() -> None:
        async with connect_async(f"http://127.0.0.1:{closed_port}", retries=0) as client:
            await client.wait_until_ready(models=["m"], timeout_s=0.3, poll_interval_s=0.05)

    with pytest.raises(ClientTimeoutError, match=r"not ready after 0\.3s: server not ready"):
        asyncio.run(run())


def test_inputs_are_validated_before_any_io(closed_port: int) -> None:
    async def run() -> None:
        async with connect_async(f"grpc://127.0.0.1:{closed_port}", retries=0) as client:
            with pytest.raises(InvalidInputError, match="scalar"):
                await client.infer("m", {"X": np.float32(1)})  # type: ignore[dict-item]
            with pytest.raises(InvalidInputError, match="concurrency"):
                await client.infer_batched("m", {"X": np.zeros((2, 1))}, concurrency=0)

    asyncio.run(run())


def test_a_closed_client_refuses_calls(closed_port: int) -> None:
    async def run() -> None:
        client = connect_async(f"grpc://127.0.0.1:{closed_port}")
        await client.close()
        with pytest.raises(ClientError, match="closed"):
            await client.is_live()

    asyncio.run(run())
