"""Calls described once for both protocols, run against real tritonclient clients pointed at
refusing and silent sockets: errors come back untranslated, gRPC deadlines are honoured."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpc_aio
import tritonclient.http as httpclient
import tritonclient.http.aio as http_aio
from tritonclient.utils import InferenceServerException
from tritonkit_client._translate import TRANSLATABLE
from tritonkit_client._wire import Call, Calls, grpc_channel_args
from tritonkit_client.errors import ClientError
from tritonkit_client.options import ClientOptions, Protocol


def test_grpc_channel_args_raise_the_message_limit() -> None:
    args = dict(grpc_channel_args(ClientOptions(max_message_mb=64)))
    assert args["grpc.max_send_message_length"] == 64 * 1024 * 1024
    assert args["grpc.max_receive_message_length"] == 64 * 1024 * 1024
    assert args["grpc.keepalive_time_ms"] == grpcclient.KeepAliveOptions().keepalive_time_ms


def test_a_call_sends_then_parses() -> None:
    sent: list[str] = []

    def send() -> int:
        sent.append("sync")
        return 7

    async def send_async() -> int:
        sent.append("async")
        return 8

    assert Call(send=send, parse=str).run() == "7"
    assert asyncio.run(Call(send=send_async, parse=str).run_async()) == "8"
    assert sent == ["sync", "async"]


SYNC_CLIENTS = [(Protocol.HTTP, httpclient), (Protocol.GRPC, grpcclient)]
AIO_CLIENTS = [(Protocol.HTTP, http_aio), (Protocol.GRPC, grpc_aio)]


@pytest.mark.parametrize(("protocol", "module"), SYNC_CLIENTS)
def test_sync_calls_raise_untranslated_errors(
    protocol: Protocol, module: Any, closed_port: int
) -> None:
    client = module.InferenceServerClient(f"127.0.0.1:{closed_port}")
    calls = Calls(client, protocol=protocol, timeout_s=2.0)
    with pytest.raises(TRANSLATABLE) as info:
        calls.live(2.0).run()
    assert not isinstance(info.value, ClientError)
    calls.close().run()


@pytest.mark.parametrize(("protocol", "module"), AIO_CLIENTS)
def test_async_calls_raise_untranslated_errors(
    protocol: Protocol, module: Any, closed_port: int
) -> None:
    async def run() -> None:
        client = module.InferenceServerClient(f"127.0.0.1:{closed_port}")
        calls = Calls(client, protocol=protocol, timeout_s=2.0)
        try:
            await calls.index().run_async()
        finally:
            await calls.close().run_async()

    with pytest.raises(TRANSLATABLE) as info:
        asyncio.run(run())
    assert not isinstance(info.value, ClientError)


def test_grpc_calls_carry_their_deadline(silent_port: int) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{silent_port}")
    calls = Calls(client, protocol=Protocol.GRPC, timeout_s=0.3)
    for call in (calls.ready(0.3), calls.index()):  # given per call, and the default
        started = time.monotonic()
        with pytest.raises(InferenceServerException, match="Deadline Exceeded"):
            call.run()
        assert 0.2 < time.monotonic() - started < 2.0
    calls.close().run()
