"""The deadline and bookkeeping of `wait_until_ready`, shared by both clients (which make the
readiness calls and sleep between polls)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from tritonkit_client._translate import translate_error
from tritonkit_client.errors import (
    ClientError,
    ClientTimeoutError,
    ModelUnavailableError,
    ResourceExhaustedError,
    ServerUnavailableError,
)

# While waiting for readiness, these mean "not ready yet"; anything else is raised at once.
NOT_READY_YET = (
    ServerUnavailableError,
    ClientTimeoutError,
    ModelUnavailableError,
    ResourceExhaustedError,
)
#: Shortest deadline of one readiness call.
MIN_CALL_TIMEOUT_S = 0.05


def not_ready_message(
    url: str, timeout_s: float, missing: Sequence[str], last_error: ClientError | None
) -> str:
    message = f"{url}: not ready after {timeout_s:g}s: {', '.join(missing)} not ready"
    if last_error is not None:
        message += f" (last error: {last_error})"
    return message


class ReadinessDeadline:
    """One `wait_until_ready`: it ends `timeout_s` after construction.

    Each poll asks `call_timeout_s()` for its calls' deadline, hands a failure to
    `not_ready_error` and what it found missing to `pause_s`.
    """

    def __init__(
        self, *, url: str, timeout_s: float, poll_interval_s: float, request_timeout_s: float
    ) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._poll_interval_s = poll_interval_s
        self._request_timeout_s = request_timeout_s
        self._deadline = time.monotonic() + timeout_s

    def call_timeout_s(self) -> float:
        """The connection's timeout, cut to the time left (at least MIN_CALL_TIMEOUT_S)."""
        remaining = self._deadline - time.monotonic()
        return max(MIN_CALL_TIMEOUT_S, min(self._request_timeout_s, remaining))

    def not_ready_error(self, error: BaseException) -> ClientError:
        """`error` translated, when it means "not ready yet"; otherwise raised at once."""
        translated = translate_error(error, context=f"readiness check at {self._url}")
        if not isinstance(translated, NOT_READY_YET):
            raise translated from error
        return translated

    def pause_s(self, missing: Sequence[str], last_error: ClientError | None) -> float | None:
        """None when nothing is `missing`, else how long to sleep before the next poll.

        Raises ClientTimeoutError naming what is missing once the deadline has passed.
        """
        if not missing:
            return None
        now = time.monotonic()
        if now >= self._deadline:
            raise ClientTimeoutError(
                not_ready_message(self._url, self._timeout_s, missing, last_error)
            )
        return min(self._poll_interval_s, self._deadline - now)
