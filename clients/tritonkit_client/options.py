"""Client options: the server URL, per-request timeout, gRPC message limit and retry policy.

`parse_url` turns ``http://host:port`` or ``grpc://host:port`` into an `Endpoint`.
`RetryPolicy` decides which failures are repeated and how long to wait in between;
`call_with_retry` and `acall_with_retry` apply it to one operation (sync and asyncio share
the same policy object and the same translation of errors).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar
from urllib.parse import urlsplit

from tritonkit_client._translate import CAUGHT, translate_error
from tritonkit_client.errors import ClientError, InvalidOptionError, InvalidURLError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# gRPC caps a message at 2 GiB - 1 byte (INT32_MAX).
MAX_MESSAGE_MB_LIMIT = 2047


class Protocol(str, Enum):
    """Wire protocol, chosen by the URL scheme."""

    HTTP = "http"
    GRPC = "grpc"


DEFAULT_PORTS: dict[Protocol, int] = {Protocol.HTTP: 8000, Protocol.GRPC: 8001}
ACCEPTED_SCHEMES = "http://host:port or grpc://host:port"


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """Where the server listens and how to talk to it."""

    protocol: Protocol
    host: str
    port: int

    @property
    def target(self) -> str:
        """``host:port`` as tritonclient wants it (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.protocol.value}://{self.target}"


def parse_url(url: str) -> Endpoint:
    """Parse ``http://host[:port]`` or ``grpc://host[:port]``; the default ports are Triton's
    (8000 for HTTP, 8001 for gRPC). Anything else raises InvalidURLError."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidURLError(str(url), f"empty URL; expected {ACCEPTED_SCHEMES}")
    text = url.strip()
    if "://" not in text:
        raise InvalidURLError(url, f"missing scheme; expected {ACCEPTED_SCHEMES}")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    try:
        protocol = Protocol(scheme)
    except ValueError as e:
        raise InvalidURLError(
            url, f"unsupported scheme {scheme!r}; expected {ACCEPTED_SCHEMES}"
        ) from e
    if parts.username is not None or parts.password is not None:
        raise InvalidURLError(url, "credentials in the URL are not supported")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidURLError(
            url, f"a path, query or fragment is not supported; expected {ACCEPTED_SCHEMES}"
        )
    host = parts.hostname
    if not host:
        raise InvalidURLError(url, f"missing host; expected {ACCEPTED_SCHEMES}")
    try:
        port = parts.port
    except ValueError as e:
        raise InvalidURLError(url, f"invalid port: {e}") from e
    if port == 0:
        raise InvalidURLError(url, "port 0 is not a server port")
    return Endpoint(protocol=protocol, host=host, port=port or DEFAULT_PORTS[protocol])


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter, for transient failures only.

    A failure is retried when its ClientError is `transient` (ServerUnavailableError,
    ResourceExhaustedError); invalid input, unknown models, timeouts and server errors are not.
    Retry ``n`` (0-based) waits ``min(max_backoff_s, backoff_s * multiplier**n)`` scaled by a
    random factor in ``[1 - jitter, 1]``.
    """

    retries: int = 2  # extra attempts after the first one
    backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise InvalidOptionError(f"retries must be >= 0, got {self.retries}")
        if self.backoff_s < 0:
            raise InvalidOptionError(f"backoff_s must be >= 0, got {self.backoff_s}")
        if self.max_backoff_s < self.backoff_s:
            raise InvalidOptionError(
                f"max_backoff_s ({self.max_backoff_s}) must be >= backoff_s ({self.backoff_s})"
            )
        if self.multiplier < 1:
            raise InvalidOptionError(f"multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise InvalidOptionError(f"jitter must be within [0, 1], got {self.jitter}")

    @property
    def attempts(self) -> int:
        """Total number of attempts, the first one included."""
        return self.retries + 1

    def should_retry(self, error: ClientError) -> bool:
        return error.transient

    def nominal_delay_s(self, retry_index: int) -> float:
        """The capped delay before retry `retry_index` (0-based), before jitter."""
        if retry_index < 0:
            raise InvalidOptionError(f"retry_index must be >= 0, got {retry_index}")
        # Cap the exponent: the product overflows a float long before anyone retries that often.
        exponent = min(retry_index, 64)
        return float(min(self.max_backoff_s, self.backoff_s * self.multiplier**exponent))

    def delay_s(self, retry_index: int, *, rng: Callable[[], float] = random.random) -> float:
        """The jittered delay before retry `retry_index`; `rng` returns a float in [0, 1)."""
        return self.nominal_delay_s(retry_index) * (1.0 - self.jitter * rng())


#: One attempt only: for creating and closing clients, unregistering regions.
NO_RETRY = RetryPolicy(retries=0)


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    """Options shared by the sync and asyncio clients. Durations are seconds."""

    timeout_s: float = 60.0  # per request: connect + send + receive
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_message_mb: int = 256  # gRPC send/receive limit (gRPC's own default is 4 MB)
    verbose: bool = False  # tritonclient's verbose mode (prints each request to stdout)

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise InvalidOptionError(f"timeout_s must be > 0, got {self.timeout_s}")
        if not 1 <= self.max_message_mb <= MAX_MESSAGE_MB_LIMIT:
            raise InvalidOptionError(
                f"max_message_mb must be within [1, {MAX_MESSAGE_MB_LIMIT}], "
                f"got {self.max_message_mb}"
            )

    @property
    def max_message_bytes(self) -> int:
        return min(self.max_message_mb * 1024 * 1024, 2**31 - 1)


def make_options(
    *,
    timeout_s: float = 60.0,
    retries: int = 2,
    backoff_s: float = 0.1,
    max_backoff_s: float = 5.0,
    max_message_mb: int = 256,
    verbose: bool = False,
) -> ClientOptions:
    """ClientOptions from the keyword arguments of `connect`/`connect_async`."""
    return ClientOptions(
        timeout_s=timeout_s,
        retry=RetryPolicy(
            retries=retries, backoff_s=backoff_s, max_backoff_s=max(max_backoff_s, backoff_s)
        ),
        max_message_mb=max_message_mb,
        verbose=verbose,
    )


def call_with_retry(
    operation: Callable[[], T],
    *,
    policy: RetryPolicy,
    context: str,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """Run `operation`, translating its errors, and repeat it on transient failures."""
    attempt = 0
    while True:
        try:
            return operation()
        except CAUGHT as e:
            delay = _retry_delay_s(e, attempt=attempt, policy=policy, context=context, rng=rng)
        attempt += 1
        sleep(delay)


async def acall_with_retry(
    operation: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    context: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """The asyncio twin of `call_with_retry`: same policy, same translation."""
    attempt = 0
    while True:
        try:
            return await operation()
        except CAUGHT as e:
            delay = _retry_delay_s(e, attempt=attempt, policy=policy, context=context, rng=rng)
        attempt += 1
        await sleep(delay)


def _retry_delay_s(
    caught: BaseException,
    *,
    attempt: int,
    policy: RetryPolicy,
    context: str,
    rng: Callable[[], float],
) -> float:
    """How long to wait before retrying after failed attempt `attempt` (0-based).

    Raises the translated error instead when `policy` gives up on it (a ClientError that was
    raised as such is re-raised unchanged).
    """
    error = translate_error(caught, context=context)
    if attempt >= policy.retries or not policy.should_retry(error):
        if error is caught:
            raise caught
        raise error from caught
    delay = policy.delay_s(attempt, rng=rng)
    logger.warning("%s (retry %d/%d in %.2fs)", error, attempt + 1, policy.retries, delay)
    return delay
