"""The few HTTP requests the launcher makes to its own server on 127.0.0.1.

`http.client` talks to 127.0.0.1 directly; urllib would honour proxy variables.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass

from tritonkit.errors import ServerError
from tritonkit.server.ports import LOOPBACK


@dataclass(frozen=True, kw_only=True)
class HttpAnswer:
    status: int
    body: bytes


@dataclass(frozen=True, kw_only=True)
class ModelIndexEntry:
    """One row of Triton's model repository index (POST /v2/repository/index)."""

    name: str
    version: str | None
    state: str | None  # READY, UNAVAILABLE, LOADING, UNLOADING, ...
    reason: str | None


def http_request(
    port: int, method: str, path: str, *, body: bytes | None = None, timeout_s: float = 2.0
) -> HttpAnswer | None:
    """The answer to one request to `127.0.0.1:port`, or None when it cannot be reached."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout_s)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return HttpAnswer(status=response.status, body=response.read())
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def readiness(port: int) -> HttpAnswer | None:
    """GET /v2/health/ready: None while nothing answers, status 200 once ready."""
    return http_request(port, "GET", "/v2/health/ready", timeout_s=1.0)


def repository_index(port: int) -> list[ModelIndexEntry]:
    """Every model in the served repository with its state and, when it failed, the reason.

    Raises ServerError when the server does not answer 200, ValueError on a body that is
    not JSON.
    """
    answer = http_request(port, "POST", "/v2/repository/index", body=b"{}")
    if answer is None or answer.status != 200:
        raise ServerError(
            f"repository index request to http://{LOOPBACK}:{port} failed: "
            f"{'no answer' if answer is None else f'HTTP {answer.status}: {answer.body[:300]!r}'}"
        )
    return _parse_index(answer.body)


def _parse_index(payload: bytes) -> list[ModelIndexEntry]:
    rows = json.loads(payload)
    if not isinstance(rows, list):
        raise ServerError(f"unexpected repository index: {payload[:200]!r}")
    return [
        ModelIndexEntry(
            name=str(row.get("name", "")),
            version=row.get("version"),
            state=row.get("state"),
            reason=row.get("reason") or None,
        )
        for row in rows
        if isinstance(row, dict)
    ]
