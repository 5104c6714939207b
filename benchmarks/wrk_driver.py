"""Drive an HTTP inference endpoint with wrk (Debian's package, /usr/bin/wrk) and parse its result.

Fairness: wrk is a *closed-loop* load generator. `concurrency` is the number of open
connections, each with exactly one request outstanding: a connection sends its next request
only after the previous response arrived. Triton and the FastAPI peer are driven with the same
wrk, the same concurrency, the same duration and byte-for-byte the same request bodies and
headers (a KServe v2 binary-data request), so their numbers compare like for like.

wrk is given a fixed Lua script (`WRK_SCRIPT`). The script reads the body file once per wrk
thread in `init()`, POSTs it with the caller's headers, counts non-2xx answers in `response()`,
and prints one JSON line from `done()` with the request count, the duration, the socket errors
and the latency percentiles in microseconds. `parse_wrk_output` finds and checks that line.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.errors import BenchmarkError

logger = logging.getLogger(__name__)

WRK_FALLBACK_PATH = Path("/usr/bin/wrk")
OCTET_STREAM = "application/octet-stream"
JSON_MARKER = "wrk_json"
# Seconds allowed beyond the run itself (thread start-up, connection close, JSON output).
SUBPROCESS_SLACK_S = 30.0

# The Lua script wrk runs. args[1] is the body file, args[2..] are "Name: value" headers.
# `non2xx` is a global of each thread's Lua state so that done() can read it with thread:get.
WRK_SCRIPT = r"""
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   local f = assert(io.open(args[1], "rb"))
   wrk.body = f:read("*a")
   f:close()
   wrk.method = "POST"
   for i = 2, #args do
      local name, value = string.match(args[i], "^([^:]+):%s*(.*)$")
      wrk.headers[name] = value
   end
   non2xx = 0
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
end

function done(summary, latency, requests)
   local bad = 0
   for _, thread in ipairs(threads) do
      bad = bad + (thread:get("non2xx") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      '{"wrk_json":1,"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
      '"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,"non_2xx":%.0f,' ..
      '"p50_us":%.3f,"p90_us":%.3f,"p95_us":%.3f,"p99_us":%.3f,"max_us":%.3f,"mean_us":%.3f}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout, bad,
      latency:percentile(50), latency:percentile(90), latency:percentile(95),
      latency:percentile(99), latency.max, latency.mean))
end
"""

_INT_KEYS = ("requests", "duration_us", "connect", "read", "write", "timeout", "non_2xx")
_LATENCY_KEYS = ("p50_us", "p90_us", "p95_us", "p99_us", "max_us")


@dataclass(frozen=True, kw_only=True)
class WrkRaw:
    """The numbers wrk's `done()` printed, as printed (microseconds, counts)."""

    requests: int
    duration_us: int
    connect_errors: int
    read_errors: int
    write_errors: int
    timeout_errors: int
    non_2xx: int
    p50_us: float
    p90_us: float
    p95_us: float
    p99_us: float
    max_us: float

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeout_errors


@dataclass(frozen=True, kw_only=True)
class LoadResult:
    """One wrk run at one concurrency. Latencies in milliseconds; `errors` counts non-2xx
    answers plus socket errors (connect, read, write, timeout)."""

    system: str | None = None
    concurrency: int
    requests: int
    duration_s: float
    throughput_rps: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: int

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise BenchmarkError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.requests < 0 or self.errors < 0:
            raise BenchmarkError("requests and errors must be >= 0")
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise BenchmarkError(f"duration_s must be a positive number, got {self.duration_s}")

    @classmethod
    def from_raw(cls, raw: WrkRaw, *, concurrency: int, system: str | None = None) -> LoadResult:
        """Convert wrk's microseconds and counts into a LoadResult."""
        if raw.duration_us <= 0:
            raise BenchmarkError(f"wrk reported a non-positive duration: {raw.duration_us} us")
        duration_s = raw.duration_us / 1e6
        return cls(
            system=system,
            concurrency=concurrency,
            requests=raw.requests,
            duration_s=duration_s,
            throughput_rps=raw.requests / duration_s,
            p50_ms=raw.p50_us / 1e3,
            p90_ms=raw.p90_us / 1e3,
            p95_ms=raw.p95_us / 1e3,
            p99_ms=raw.p99_us / 1e3,
            max_ms=raw.max_us / 1e3,
            errors=raw.non_2xx + raw.socket_errors,
        )

    def labelled(self, system: str) -> LoadResult:
        return replace(self, system=system)


def parse_wrk_output(stdout: str) -> WrkRaw:
    """Find the JSON line the Lua `done()` printed (wrk's own report surrounds it) and check it.

    The last line that is a JSON object carrying the marker key wins. Missing keys, non-numeric
    or negative values raise BenchmarkError naming the problem.
    """
    found: dict[str, object] | None = None
    for line in stdout.splitlines():
        text = line.strip()
        if not (text.startswith("{") and text.endswith("}")):
            continue
        try:
            candidate = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(candidate, dict) and JSON_MARKER in candidate:
            found = candidate
    if found is None:
        raise BenchmarkError(f"wrk printed no result line; its output was:\n{stdout[-2000:]}")
    values: dict[str, float] = {}
    for key in (*_INT_KEYS, *_LATENCY_KEYS):
        value = found.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BenchmarkError(f"wrk result line lacks a number for {key!r}: {found}")
        if not math.isfinite(value) or value < 0:
            raise BenchmarkError(f"wrk result line has an invalid {key!r}: {value}")
        values[key] = float(value)
    return WrkRaw(
        requests=int(values["requests"]),
        duration_us=int(values["duration_us"]),
        connect_errors=int(values["connect"]),
        read_errors=int(values["read"]),
        write_errors=int(values["write"]),
        timeout_errors=int(values["timeout"]),
        non_2xx=int(values["non_2xx"]),
        p50_us=values["p50_us"],
        p90_us=values["p90_us"],
        p95_us=values["p95_us"],
        p99_us=values["p99_us"],
        max_us=values["max_us"],
    )


def find_wrk() -> Path:
    """wrk on PATH, else Debian's /usr/bin/wrk."""
    found = shutil.which("wrk")
    if found:
        return Path(found)
    if WRK_FALLBACK_PATH.is_file():
        return WRK_FALLBACK_PATH
    raise BenchmarkError("wrk is not installed: apt-get install -y wrk")


def _header_args(headers: Mapping[str, str]) -> list[str]:
    merged = dict(headers)
    if not any(name.lower() == "content-type" for name in merged):
        merged["Content-Type"] = OCTET_STREAM
    args = []
    for name, value in merged.items():
        if not name or ":" in name or any(c in name + value for c in "\r\n"):
            raise BenchmarkError(f"invalid HTTP header {name!r}: {value!r}")
        if name.lower() == "content-length":
            raise BenchmarkError("Content-Length is set by wrk from the body; do not pass it")
        args.append(f"{name}: {value}")
    return args


def _whole_seconds(value: float, what: str) -> int:
    """wrk's -d and --timeout take whole seconds; round up, at least 1."""
    if not (value > 0 and math.isfinite(value)):
        raise BenchmarkError(f"{what} must be a positive number of seconds, got {value}")
    return max(1, math.ceil(value - 1e-9))


def wrk_command(
    wrk: Path,
    url: str,
    script: Path,
    body_file: Path,
    header_args: Sequence[str],
    *,
    concurrency: int,
    duration_s: float,
    threads: int,
    timeout_s: float,
) -> list[str]:
    """The wrk command line; everything after `--` is handed to the script's init(args)."""
    return [
        str(wrk),
        f"--connections={concurrency}",
        f"--threads={threads}",
        f"--duration={_whole_seconds(duration_s, 'duration_s')}s",
        f"--timeout={_whole_seconds(timeout_s, 'timeout_s')}s",
        "--latency",
        f"--script={script}",
        url,
        "--",
        str(body_file),
        *header_args,
    ]


class NoCompletedRequestsError(BenchmarkError):
    """wrk ran, but no request completed within the window."""


def run_wrk(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    concurrency: int,
    duration_s: float,
    threads: int | None = None,
    timeout_s: float = 10,
    system: str | None = None,
) -> LoadResult:
    """POST `body` with `headers` to `url` from `concurrency` connections for `duration_s`.

    For KServe requests pass `benchmarks.kserve_codec.encode_request(...)`'s body and
    `request_headers(header_length)` (Inference-Header-Content-Length, Content-Type).

    `threads` defaults to min(concurrency, 2) (this machine has 2 cores; wrk needs
    connections >= threads). `duration_s` and `timeout_s` are rounded up to whole seconds,
    the unit wrk accepts. Content-Type defaults to application/octet-stream; Content-Length
    comes from the body. A wrk failure, a missing result line or a run in which no request
    completed raises BenchmarkError carrying wrk's stderr.
    """
    if concurrency < 1:
        raise BenchmarkError(f"concurrency must be >= 1, got {concurrency}")
    n_threads = min(concurrency, 2) if threads is None else threads
    if not 1 <= n_threads <= concurrency:
        raise BenchmarkError(f"threads must be in 1..concurrency ({concurrency}), got {threads}")
    header_args = _header_args(headers)
    wrk = find_wrk()
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        script = Path(tmp) / "post_body.lua"
        script.write_text(WRK_SCRIPT, encoding="utf-8")
        body_file = Path(tmp) / "body.bin"
        body_file.write_bytes(body)
        command = wrk_command(
            wrk, url, script, body_file, header_args,
            concurrency=concurrency, duration_s=duration_s, threads=n_threads,
            timeout_s=timeout_s,
        )
        logger.debug("running %s", " ".join(command))
        limit_s = _whole_seconds(duration_s, "duration_s") + timeout_s + SUBPROCESS_SLACK_S
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=limit_s, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise BenchmarkError(f"wrk did not finish within {limit_s:.0f} s: {url}") from e
        except OSError as e:
            raise BenchmarkError(f"cannot run {wrk}: {e}") from e
    if done.returncode != 0:
        raise BenchmarkError(
            f"wrk exited with {done.returncode} against {url}: {done.stderr.strip()}\n"
            f"{done.stdout.strip()[-1000:]}"
        )
    try:
        raw = parse_wrk_output(done.stdout)
    except BenchmarkError as e:
        raise BenchmarkError(f"{e}\nwrk stderr: {done.stderr.strip()}") from e
    if raw.requests == 0:
        raise NoCompletedRequestsError(
            f"no request completed against {url} in {duration_s} s "
            f"(socket errors: connect {raw.connect_errors}, read {raw.read_errors}, "
            f"write {raw.write_errors}, timeout {raw.timeout_errors}); "
            f"wrk stderr: {done.stderr.strip()}"
        )
    result = LoadResult.from_raw(raw, concurrency=concurrency, system=system)
    if result.errors:
        logger.warning(
            "%s at concurrency %d: %d errors (%d non-2xx, %d socket)",
            url, concurrency, result.errors, raw.non_2xx, raw.socket_errors,
        )
    logger.info(
        "%s c=%d: %.1f req/s, p50 %.2f ms, p99 %.2f ms, %d errors",
        system or url, concurrency, result.throughput_rps, result.p50_ms, result.p99_ms,
        result.errors,
    )
    return result


def sweep(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    concurrencies: Sequence[int],
    duration_s: float,
    *,
    timeout_s: float = 10,
    system: str | None = None,
    longer_windows: int = 2,
) -> list[LoadResult]:
    """run_wrk at each concurrency in order (same body, same headers, same duration).

    A level in which no request completes (a window shorter than one slow request) is
    measured again with a window three times longer, up to `longer_windows` times.
    """
    if not concurrencies:
        raise BenchmarkError("sweep needs at least one concurrency")
    results = []
    for c in concurrencies:
        window = duration_s
        for attempt in range(longer_windows + 1):
            try:
                results.append(run_wrk(url, body, headers, concurrency=c, duration_s=window,
                                       timeout_s=timeout_s, system=system))
                break
            except NoCompletedRequestsError:
                if attempt == longer_windows:
                    raise
                window *= 3
                logger.warning("no request completed at concurrency %d; measuring again over "
                               "%.0f s", c, window)
    return results
