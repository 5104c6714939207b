"""One call per protocol: the demo runs each pipeline over HTTP, then gRPC, timed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tritonkit_client import TritonClient, connect

from tritonkit.server import ServerURLs

T = TypeVar("T")


def over_protocols(urls: ServerURLs, pipeline: str,
                   call: Callable[[TritonClient], T]) -> list[tuple[str, T, float]]:
    """`call(client)` over HTTP, then gRPC, once `pipeline` is ready: (protocol, its result,
    seconds including the readiness wait)."""
    runs = []
    for protocol, url in (("HTTP", urls.http), ("gRPC", urls.grpc)):
        started = time.monotonic()
        with connect(url, timeout_s=60) as client:
            client.wait_until_ready(models=[pipeline], timeout_s=60)
            result = call(client)
        runs.append((protocol, result, time.monotonic() - started))
    return runs
