"""Client-side failover over a list of Triton endpoints (replicas of one deployment).

`connect_failover(["grpc://a:8001", "grpc://b:8001"])` returns a `FailoverClient`. Each call
goes to the next healthy endpoint in round-robin order. When an endpoint cannot serve it
(`ServerUnavailableError`: connection refused or reset, gRPC UNAVAILABLE, HTTP 503), the
endpoint is skipped for `ejection_s` seconds and the same call is sent to the next one.
Nothing else fails over: invalid input (INVALID_ARGUMENT/400), unknown models, server errors,
timeouts and full queues are raised at once, because another replica would answer the same
or the request may already have run. Inference requests are idempotent, so repeating one that
a dying replica dropped is safe.

Like `TritonClient`, a FailoverClient is meant for one thread at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from numpy.typing import NDArray

from tritonkit_client._requests import Parameters
from tritonkit_client.errors import ClientError, InvalidOptionError, ServerUnavailableError
from tritonkit_client.options import ClientOptions, Endpoint, RetryPolicy, parse_url
from tritonkit_client.sync_client import TritonClient

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class FailoverPolicy:
    """How a `FailoverClient` moves between endpoints.

    A call tries endpoints until one answers, for at most `rounds` passes over the list;
    between passes it waits `backoff_s`. An endpoint that failed is skipped for `ejection_s`
    seconds (unless every endpoint is skipped, then all are tried).
    """

    rounds: int = 3
    ejection_s: float = 2.0
    backoff_s: float = 0.1

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise InvalidOptionError(f"rounds must be >= 1, got {self.rounds}")
        if self.ejection_s < 0 or self.backoff_s < 0:
            raise InvalidOptionError("ejection_s and backoff_s must be >= 0")


@dataclass(frozen=True, kw_only=True)
class FailoverStats:
    """What a FailoverClient did so far."""

    calls: int  # calls made through the client
    attempts: int  # requests sent (attempts >= calls)
    failovers: int  # attempts that failed over to another endpoint
    failures_by_endpoint: dict[str, int]


def should_fail_over(error: ClientError) -> bool:
    """True for failures another replica can fix: the endpoint is unavailable."""
    return isinstance(error, ServerUnavailableError)


class FailoverClient:
    """Round-robin over `endpoints` with failover on unavailability; see the module docstring."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        options: ClientOptions | None = None,
        policy: FailoverPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not endpoints:
            raise InvalidOptionError("a FailoverClient needs at least one endpoint")
        protocols = {e.protocol for e in endpoints}
        if len(protocols) > 1:
            raise InvalidOptionError(
                "all endpoints must use one protocol (http:// or grpc://), got "
                f"{sorted(p.value for p in protocols)}"
            )
        base = options if options is not None else ClientOptions()
        # No retries inside one endpoint: a transient failure moves to the next endpoint.
        self._options = ClientOptions(
            timeout_s=base.timeout_s, retry=RetryPolicy(retries=0),
            max_message_mb=base.max_message_mb, verbose=base.verbose,
        )
        self._endpoints = tuple(endpoints)
        self._policy = policy if policy is not None else FailoverPolicy()
        self._clock = clock
        self._sleep = sleep
        self._clients: dict[int, TritonClient] = {}
        self._ejected_until = [0.0] * len(self._endpoints)
        self._next = 0
        self._calls = 0
        self._attempts = 0
        self._failovers = 0
        self._failures = [0] * len(self._endpoints)
        self._closed = False

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._endpoints

    @property
    def policy(self) -> FailoverPolicy:
        return self._policy

    def stats(self) -> FailoverStats:
        return FailoverStats(
            calls=self._calls,
            attempts=self._attempts,
            failovers=self._failovers,
            failures_by_endpoint={
                e.url: n for e, n in zip(self._endpoints, self._failures, strict=True)
            },
        )

    def __enter__(self) -> FailoverClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for index in list(self._clients):
            self._drop(index)

    # -- calls -------------------------------------------------------------------------------

    def infer(
        self,
        model: str,
        inputs: Mapping[str, NDArray[Any]],
        *,
        outputs: Sequence[str] | None = None,
        version: str = "",
        parameters: Parameters | None = None,
        class_counts: Mapping[str, int] | None = None,
    ) -> dict[str, NDArray[Any]]:
        """`TritonClient.infer` on the first endpoint that can serve it."""
        return self.call(
            lambda client: client.infer(
                model, inputs, outputs=outputs, version=version, parameters=parameters,
                class_counts=class_counts,
            ),
            what=f"infer {model!r}",
        )

    def is_ready(self) -> bool:
        """True when some endpoint answers that it is ready."""
        return self.call(lambda client: client.is_ready(), what="readiness check")

    def call(self, operation: Callable[[TritonClient], T], *, what: str = "call") -> T:
        """Run `operation` with an endpoint's client, failing over as the policy says."""
        if self._closed:
            raise ClientError("the failover client is closed")
        self._calls += 1
        last: ClientError | None = None
        count = len(self._endpoints)
        for round_index in range(self._policy.rounds):
            if round_index:
                self._sleep(self._policy.backoff_s)
            for index in self._order():
                self._attempts += 1
                try:
                    return operation(self._client(index))
                except ClientError as e:
                    if not should_fail_over(e):
                        raise
                    last = e
                    self._failures[index] += 1
                    self._failovers += 1
                    self._ejected_until[index] = self._clock() + self._policy.ejection_s
                    self._drop(index)  # its connection may be broken; reconnect next time
                    logger.warning("%s: %s; trying the next of %d endpoint(s)", what, e, count)
        assert last is not None  # every round tried at least one endpoint
        raise ServerUnavailableError(
            f"{what}: no endpoint could serve it after {self._policy.rounds} round(s) over "
            f"{count} endpoint(s); last error: {last}"
        ) from last

    # -- endpoints ---------------------------------------------------------------------------

    def _order(self) -> list[int]:
        """Endpoint indexes for one pass: round-robin start, ejected ones skipped (all of them
        when every endpoint is ejected)."""
        count = len(self._endpoints)
        start = self._next
        self._next = (self._next + 1) % count
        rotated = [(start + i) % count for i in range(count)]
        now = self._clock()
        healthy = [i for i in rotated if self._ejected_until[i] <= now]
        return healthy or rotated

    def _client(self, index: int) -> TritonClient:
        client = self._clients.get(index)
        if client is None:
            client = TritonClient(self._endpoints[index], self._options)
            self._clients[index] = client
        return client

    def _drop(self, index: int) -> None:
        client = self._clients.pop(index, None)
        if client is None:
            return
        try:
            client.close()
        except ClientError as e:  # closing a broken connection may fail; nothing to keep
            logger.debug("closing the client for %s: %s", self._endpoints[index].url, e)


def connect_failover(
    urls: Sequence[str],
    *,
    timeout_s: float = 60.0,
    max_message_mb: int = 256,
    rounds: int = 3,
    ejection_s: float = 2.0,
    backoff_s: float = 0.1,
) -> FailoverClient:
    """A FailoverClient over ``http://host:port`` or ``grpc://host:port`` URLs (one scheme)."""
    return FailoverClient(
        [parse_url(u) for u in urls],
        options=ClientOptions(timeout_s=timeout_s, max_message_mb=max_message_mb),
        policy=FailoverPolicy(rounds=rounds, ejection_s=ejection_s, backoff_s=backoff_s),
    )
