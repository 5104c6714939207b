"""Read a tritonserver log as it grows and say, in the server's own words, why a start failed."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tritonkit.server.server_http import ModelIndexEntry

MAX_REASON_LINES = 12
_TAIL_KEPT = 30

# Log lines that look like errors but are expected on a machine without a GPU.
_HARMLESS = (
    "Failed to initialize NVML",
    "CudaDriverHelper has not been initialized",
    "DCGM unable to start",
    "unable to create stream",
    "CUDA driver version is insufficient",
    "Unable to allocate pinned system memory",
    "unable to get number of CUDA devices",
)
_LOG_MESSAGE = re.compile(r'^[IWEF]\d{4} [\d:.]+\s+\d+\s+\S+\]\s+"(?P<msg>.*)"\s*$')
_FAILED_LOAD = re.compile(
    r"^failed to load '(?P<name>[^']+)' version (?P<version>\d+): (?P<why>.*)$", re.DOTALL
)
_FAILED_SERVICE = re.compile(r"^failed to start (?P<service>\w+) service: (?P<why>.*)$", re.DOTALL)
_PORT_IN_USE = re.compile(r"already in use|Address already in use", re.IGNORECASE)


def _log_message(line: str) -> str:
    """The message of a Triton log line, unquoted and unescaped; other lines unchanged."""
    match = _LOG_MESSAGE.match(line)
    if match is None:
        return line.strip()
    quoted = match.group("msg")
    try:
        message = json.loads(f'"{quoted}"')
    except json.JSONDecodeError:
        return quoted
    return message if isinstance(message, str) else quoted


def shorten(text: str, max_lines: int = MAX_REASON_LINES) -> str:
    """`text` without blank lines, cut to `max_lines` with a note of how many were left out."""
    lines = [ln.rstrip() for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], f"... ({len(lines) - max_lines} more lines in the log)"]
    return "\n".join(lines)


@dataclass(frozen=True, kw_only=True)
class LoadFailure:
    model: str
    version: str
    reason: str


class ServerLogReader:
    """Reads a growing server log and keeps the lines that explain a failed start."""

    def __init__(self, path: Path, *, offset: int = 0) -> None:
        self._path = path
        self._offset = offset
        self._partial = ""
        self.load_failures: list[LoadFailure] = []
        self.service_failures: list[str] = []
        self.errors: list[str] = []
        self.tail: list[str] = []

    def poll(self) -> None:
        """Read the lines written since the last call (a missing file reads as nothing)."""
        try:
            with self._path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return
        self._offset += len(chunk)
        text = self._partial + chunk.decode("utf-8", errors="replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._consume(line)

    def _consume(self, line: str) -> None:
        if not line.strip():
            return
        self.tail = [*self.tail[-(_TAIL_KEPT - 1):], line.rstrip()]
        message = _log_message(line)
        if (m := _FAILED_LOAD.match(message)) is not None:
            self.load_failures.append(
                LoadFailure(model=m["name"], version=m["version"], reason=m["why"])
            )
        elif (m := _FAILED_SERVICE.match(message)) is not None:
            self.service_failures.append(message)
        elif (line.startswith(("E", "F")) or line.startswith("error:")) and not any(
            h in line for h in _HARMLESS
        ):
            self.errors.append(message)

    def port_conflict(self) -> bool:
        """A service failed to start because its port was taken."""
        return any(_PORT_IN_USE.search(s) for s in self.service_failures)

    def explain(self, *, tail_lines: int = MAX_REASON_LINES) -> str:
        """The server's own reasons, most specific first."""
        if self.load_failures:
            return "\n".join(
                f"model '{f.model}' version {f.version} failed to load: {shorten(f.reason)}"
                for f in self.load_failures
            )
        if self.service_failures:
            return "\n".join(self.service_failures)
        if self.errors:
            return shorten("\n".join(self.errors))
        if self.tail:
            return "no error in the log; its last lines:\n" + "\n".join(self.tail[-tail_lines:])
        return "the log is empty"


def explain_log(path: Path, *, tail_lines: int = MAX_REASON_LINES) -> str:
    """The server's own explanation of a failure, read from the whole log at `path`."""
    reader = ServerLogReader(path)
    reader.poll()
    return reader.explain(tail_lines=tail_lines)


def describe_unready(entries: Sequence[ModelIndexEntry]) -> str | None:
    """One line per model that is not READY, with its reason; None when all are ready."""
    rows = [
        f"model '{e.name}' version {e.version or '-'}: {e.state or 'UNKNOWN'}"
        + (f": {shorten(e.reason)}" if e.reason else "")
        for e in entries
        if e.state != "READY"
    ]
    return "\n".join(rows) if rows else None
