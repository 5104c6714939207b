"""Drive an HTTP inference endpoint with hey (Debian's package, /usr/bin/hey) and parse its result.

Fairness: hey is a *closed-loop* load generator. `concurrency` is the number of hey workers,
each with exactly one request outstanding: a worker sends its next request only after the
previous response arrived. Triton and the FastAPI peer are driven with the same hey, the same
concurrency, the same window and byte-for-byte the same request bodies and headers (a KServe v2
binary-data request), so their numbers compare like for like. hey runs with
`-disable-compression`: otherwise Go adds `Accept-Encoding: gzip` and Triton would spend time
compressing answers the peer sends plain.

Why hey and not wrk: wrk 4.1 (Debian) printed latency histograms that no run could have
produced. With ONE connection it reported 2401 requests in 4.0 s at a mean of 29 ms (the
latencies add up to 70 s, more than the 4 s window) and a p99 of 456 ms that no request took;
against a tiny Python server 39113 requests in 2.1 s at a mean of 0.06 ms (2.5 s in 2.1 s).
hey's numbers add up: the per-request latencies of a run sum to concurrency x window.

What is parsed: hey's default summary, not its `-o csv` dump, because the CSV leaves out the
requests that failed without an HTTP answer (refused, reset, timed out), and those must count
as errors. The summary holds everything needed, computed by hey over every response:
`Total` (the window plus the drain: at the end of the window each worker finishes its request
in flight, so every response counted lies inside `Total`), `Slowest`, `Average`,
`Requests/sec` (responses and failed requests per second), the latency distribution
(10, 25, 50, 75, 90, 95, 99 %), the status code distribution (one count per HTTP status) and
the error distribution (one count per socket-level error message).

Resolution: hey prints every duration in seconds with 4 decimals, so latencies here have a
resolution of 0.1 ms (values are rounded to the nearest 0.1 ms).

Percentiles are hey's, over the n responses sorted by latency (2xx or not): percentile p is
the value at 0-based index ceil(p*n/100) (details for fewer than 100 responses in `hey_ranks`).
Where that index passes the last response hey prints nothing (p99 below 100 responses, p95
below 20, p90 below 10); the value there is the slowest response, which is what
`HeyRaw.percentile_s` returns.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness.benchmarks.errors import BenchmarkError

logger = logging.getLogger(__name__)

HEY_FALLBACK_PATH = Path("/usr/bin/hey")
OCTET_STREAM = "application/octet-stream"
# Seconds allowed beyond window + request timeout (start-up, connection close, the report).
SUBPROCESS_SLACK_S = 30.0
# hey prints seconds with 4 decimals: each printed duration is within half a unit of the truth.
RESOLUTION_S = 1e-4
HALF_UNIT_S = RESOLUTION_S / 2
# hey keeps the latencies of its first million responses only.
MAX_RESPONSES = 1_000_000
HEY_PERCENTILES = (10, 25, 50, 75, 90, 95, 99)
# hey -H accepts `^([\w-]+):\s*(.+)` (Go's \w is ASCII).
_HEADER_NAME = re.compile(r"[A-Za-z0-9_-]+")
_SET_BY_HEY = ("content-length", "host")

_NUMBER = r"([-+]?(?:\d+(?:\.\d*)?|NaN|Inf))"
_SUMMARY_LINES = {
    "total_s": re.compile(rf"^\s*Total:\s+{_NUMBER} secs\s*$", re.M),
    "slowest_s": re.compile(rf"^\s*Slowest:\s+{_NUMBER} secs\s*$", re.M),
    "fastest_s": re.compile(rf"^\s*Fastest:\s+{_NUMBER} secs\s*$", re.M),
    "average_s": re.compile(rf"^\s*Average:\s+{_NUMBER} secs\s*$", re.M),
    "rps": re.compile(rf"^\s*Requests/sec:\s+{_NUMBER}\s*$", re.M),
}
_PERCENTILE_LINE = re.compile(r"^\s*(\d+)% in (\S+) secs\s*$")
_STATUS_LINE = re.compile(r"^\s*\[(\d+)\]\t(\d+) responses\s*$")
_ERROR_LINE = re.compile(r"^\s*\[(\d+)\]\t(.*?)\s*$")
_SECTIONS = ("Summary:", "Response time histogram:", "Latency distribution:",
             "Details (average, fastest, slowest):", "Status code distribution:",
             "Error distribution:")


@dataclass(frozen=True, kw_only=True)
class Percentile:
    """One line of hey's latency distribution."""

    percent: int
    seconds: float


@dataclass(frozen=True, kw_only=True)
class StatusCount:
    """One line of hey's status code distribution: `count` answers with HTTP status `code`."""

    code: int
    count: int

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


@dataclass(frozen=True, kw_only=True)
class ErrorCount:
    """One line of hey's error distribution: `count` requests failed with `message`."""

    message: str
    count: int


@dataclass(frozen=True, kw_only=True)
class HeyRaw:
    """hey's summary, as printed (seconds with 4 decimals, counts)."""

    total_s: float
    slowest_s: float
    fastest_s: float
    average_s: float  # NaN when no response arrived
    rps: float  # hey's Requests/sec: responses and failed requests per second of `total_s`
    distribution: tuple[Percentile, ...]
    status_codes: tuple[StatusCount, ...]
    errors: tuple[ErrorCount, ...]

    @property
    def responses(self) -> int:
        """HTTP answers of any status."""
        return sum(s.count for s in self.status_codes)

    @property
    def non_2xx(self) -> int:
        return sum(s.count for s in self.status_codes if not s.ok)

    @property
    def socket_errors(self) -> int:
        """Requests that got no HTTP answer (refused, reset, timed out, ...)."""
        return sum(e.count for e in self.errors)

    def percentile_s(self, percent: int) -> float:
        """hey's percentile; the slowest response where hey printed none (see module doc)."""
        if percent not in HEY_PERCENTILES:
            raise BenchmarkError(f"hey reports the percentiles {HEY_PERCENTILES}, not {percent}")
        if self.responses == 0:
            raise BenchmarkError("no response arrived: there are no latency percentiles")
        for p in self.distribution:
            if p.percent == percent:
                return p.seconds
        return self.slowest_s


def hey_ranks(n: int) -> dict[int, int]:
    """Percentile -> the 0-based index hey reads it from among n sorted latencies.

    hey walks the sorted latencies once and gives index i to the next percentile p still
    open when i * 100 // n >= p: the index is ceil(p * n / 100), one past the previous
    percentile's where two would share one (fewer than 100 responses), and a percentile that
    runs past the last index is not printed.
    """
    ranks: dict[int, int] = {}
    pending = list(HEY_PERCENTILES)
    for i in range(n):
        if not pending:
            break
        if i * 100 // n >= pending[0]:
            ranks[pending.pop(0)] = i
    return ranks


def _section_lines(stdout: str, title: str) -> list[str]:
    """The lines after the section heading `title` up to the next heading."""
    lines = stdout.splitlines()
    try:
        start = [line.strip() for line in lines].index(title) + 1
    except ValueError:
        return []
    body = []
    for line in lines[start:]:
        if line.strip() in _SECTIONS:
            break
        if line.strip():
            body.append(line)
    return body


def _summary_number(stdout: str, key: str) -> float:
    found = _SUMMARY_LINES[key].findall(stdout)
    if len(found) != 1:
        raise BenchmarkError(f"hey's summary has {len(found)} {key!r} lines, expected 1; "
                             f"its output was:\n{stdout[-2000:]}")
    return float(found[0])


def parse_hey_output(stdout: str) -> HeyRaw:
    """Read hey's default summary and check that its numbers agree with each other.

    Raises BenchmarkError naming the problem for: no summary, a missing or non-numeric line,
    a negative or non-finite value, an unreadable distribution line, percentiles out of order
    or missing where hey prints them, more than a million responses (hey's distributions then
    cover only the first million), and counts that disagree with Requests/sec x Total.
    """
    if "Summary:" not in (line.strip() for line in stdout.splitlines()):
        raise BenchmarkError(f"hey printed no summary; its output was:\n{stdout[-2000:]}")
    numbers = {key: _summary_number(stdout, key) for key in _SUMMARY_LINES}
    for key, value in numbers.items():
        if key != "average_s" and not (math.isfinite(value) and value >= 0):
            raise BenchmarkError(f"hey's summary has an invalid {key!r}: {value}")
    if numbers["total_s"] <= 0:
        raise BenchmarkError(f"hey reported a non-positive Total: {numbers['total_s']} s")

    distribution = []
    for line in _section_lines(stdout, "Latency distribution:"):
        match = _PERCENTILE_LINE.match(line)
        if match is None:
            raise BenchmarkError(f"unreadable latency distribution line from hey: {line!r}")
        percent, seconds = int(match[1]), float(match[2])
        if percent == 0:  # hey's placeholder for a percentile it did not compute
            continue
        if percent not in HEY_PERCENTILES or not (math.isfinite(seconds) and seconds >= 0):
            raise BenchmarkError(f"invalid latency distribution line from hey: {line!r}")
        distribution.append(Percentile(percent=percent, seconds=seconds))

    status_codes = []
    for line in _section_lines(stdout, "Status code distribution:"):
        match = _STATUS_LINE.match(line)
        if match is None:
            raise BenchmarkError(f"unreadable status code line from hey: {line!r}")
        status_codes.append(StatusCount(code=int(match[1]), count=int(match[2])))
    errors = []
    for line in _section_lines(stdout, "Error distribution:"):
        match = _ERROR_LINE.match(line)
        if match is None:
            raise BenchmarkError(f"unreadable error distribution line from hey: {line!r}")
        errors.append(ErrorCount(message=match[2], count=int(match[1])))

    raw = HeyRaw(
        total_s=numbers["total_s"], slowest_s=numbers["slowest_s"],
        fastest_s=numbers["fastest_s"], average_s=numbers["average_s"], rps=numbers["rps"],
        distribution=tuple(distribution),
        status_codes=tuple(sorted(status_codes, key=lambda s: s.code)),
        errors=tuple(sorted(errors, key=lambda e: (-e.count, e.message))),
    )
    _check_summary(raw)
    return raw


def _check_summary(raw: HeyRaw) -> None:
    n = raw.responses
    if n >= MAX_RESPONSES:
        raise BenchmarkError(f"hey counted {n} responses; its latency distribution covers only "
                             f"the first {MAX_RESPONSES}: use a shorter window")
    # Requests/sec is (responses + failed requests) / Total, both printed to 4 decimals.
    counted = n + raw.socket_errors
    implied = raw.rps * raw.total_s
    if abs(implied - counted) > 1 + HALF_UNIT_S * (raw.rps + raw.total_s):
        raise BenchmarkError(
            f"hey's counts disagree: Requests/sec {raw.rps} x Total {raw.total_s} s = "
            f"{implied:.1f} requests, but its distributions hold {n} responses and "
            f"{raw.socket_errors} errors")
    if n == 0:
        if raw.distribution:
            raise BenchmarkError("hey printed latency percentiles without any response")
        return
    if not math.isfinite(raw.average_s) or raw.average_s < 0:
        raise BenchmarkError(f"hey's summary has an invalid 'average_s': {raw.average_s}")
    printed = [p.percent for p in raw.distribution]
    expected = list(hey_ranks(n))
    if printed != expected:
        raise BenchmarkError(f"hey's latency distribution lists the percentiles {printed}; "
                             f"for {n} responses it computes {expected}")
    ordered = [raw.fastest_s, *(p.seconds for p in raw.distribution), raw.slowest_s]
    if any(a > b for a, b in itertools.pairwise(ordered)):
        raise BenchmarkError(f"hey's latencies are out of order (fastest, percentiles, "
                             f"slowest): {ordered}")


@dataclass(frozen=True, kw_only=True)
class LoadResult:
    """One hey run at one concurrency. Latencies in milliseconds (0.1 ms resolution), over
    every HTTP answer; `requests` counts HTTP answers of any status; `errors` counts non-2xx
    answers plus requests that failed without an answer (refused, reset, timed out)."""

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
    def from_raw(cls, raw: HeyRaw, *, concurrency: int, system: str | None = None) -> LoadResult:
        """Convert hey's seconds and counts into a LoadResult (after the closed-loop check)."""
        if raw.responses == 0:
            raise BenchmarkError("hey got no response: there is nothing to report")
        _check_closed_loop(raw, concurrency)
        return cls(
            system=system,
            concurrency=concurrency,
            requests=raw.responses,
            duration_s=raw.total_s,
            throughput_rps=raw.responses / raw.total_s,
            p50_ms=_ms(raw.percentile_s(50)),
            p90_ms=_ms(raw.percentile_s(90)),
            p95_ms=_ms(raw.percentile_s(95)),
            p99_ms=_ms(raw.percentile_s(99)),
            max_ms=_ms(raw.slowest_s),
            errors=raw.non_2xx + raw.socket_errors,
        )

    def labelled(self, system: str) -> LoadResult:
        return replace(self, system=system)


def _ms(seconds: float) -> float:
    """hey's seconds (4 decimals) as milliseconds with hey's 0.1 ms resolution."""
    return round(seconds * 1e3, 1)


def _check_closed_loop(raw: HeyRaw, concurrency: int) -> None:
    """Each worker has one request outstanding, so the latencies of the responses cannot add
    up to more than `concurrency` x (window + the slowest request). hey prints the mean, not
    each latency: the sum is mean x responses, allowed half a printed unit per response."""
    n = raw.responses
    recorded_s = raw.average_s * n
    possible_s = concurrency * (raw.total_s + raw.slowest_s)
    if recorded_s - HALF_UNIT_S * (n + 2 * concurrency) > possible_s:
        raise BenchmarkError(
            f"hey's latency statistics are inconsistent: {n} responses at mean "
            f"{raw.average_s * 1e3:.2f} ms add up to {recorded_s:.1f} s, more than "
            f"{concurrency} worker(s) can spend in {raw.total_s:.1f} s "
            f"(+ the slowest {raw.slowest_s * 1e3:.1f} ms each)")


def find_hey() -> Path:
    """hey on PATH, else Debian's /usr/bin/hey."""
    found = shutil.which("hey")
    if found:
        return Path(found)
    if HEY_FALLBACK_PATH.is_file():
        return HEY_FALLBACK_PATH
    raise BenchmarkError("hey is not installed: apt-get install -y hey")


@dataclass(frozen=True, kw_only=True)
class HeyHeaders:
    """The caller's headers split the way hey takes them: `-T` and `-H "Name: value"`."""

    content_type: str
    others: tuple[str, ...]


def hey_headers(headers: Mapping[str, str]) -> HeyHeaders:
    """Check the headers and split out Content-Type (default application/octet-stream)."""
    content_type = OCTET_STREAM
    others = []
    for name, value in headers.items():
        text = value.strip()
        if (not _HEADER_NAME.fullmatch(name) or not text
                or any(c in value for c in "\r\n")):
            raise BenchmarkError(f"invalid HTTP header {name!r}: {value!r} (hey takes names of "
                                 "letters, digits, '-' and '_' and a non-empty value)")
        if name.lower() in _SET_BY_HEY:
            raise BenchmarkError(f"{name} is set by hey (from the body and the URL); "
                                 "do not pass it")
        if name.lower() == "content-type":
            content_type = text
        else:
            others.append(f"{name}: {text}")
    return HeyHeaders(content_type=content_type, others=tuple(others))


def _window_ms(duration_s: float) -> int:
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise BenchmarkError(f"duration_s must be a positive number of seconds, got {duration_s}")
    return max(1, round(duration_s * 1e3))


def _timeout_whole_s(timeout_s: float) -> int:
    """hey's -t takes whole seconds (0 would mean none); round up, at least 1."""
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise BenchmarkError(f"timeout_s must be a positive number of seconds, got {timeout_s}")
    return max(1, math.ceil(timeout_s - 1e-9))


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BenchmarkError(f"hey needs an http:// or https:// URL with a host, got {url!r}")


def hey_command(
    hey: Path,
    url: str,
    body_file: Path,
    headers: HeyHeaders,
    *,
    concurrency: int,
    duration_s: float,
    timeout_s: float,
) -> list[str]:
    """The hey command line: POST the file's bytes from `concurrency` workers for the window
    (milliseconds: hey takes Go durations), per-request timeout in whole seconds."""
    header_args = [arg for header in headers.others for arg in ("-H", header)]
    return [
        str(hey),
        "-z", f"{_window_ms(duration_s)}ms",
        "-c", str(concurrency),
        "-m", "POST",
        "-D", str(body_file),
        "-T", headers.content_type,
        "-t", str(_timeout_whole_s(timeout_s)),
        "-disable-compression",
        *header_args,
        url,
    ]


class NoCompletedRequestsError(BenchmarkError):
    """hey ran, but no request got an HTTP answer (every one was refused, reset or timed out)."""


def _error_summary(raw: HeyRaw) -> str:
    if not raw.errors:
        return "no errors"
    shown = "; ".join(f"{e.count} x {e.message}" for e in raw.errors[:3])
    more = f"; and {len(raw.errors) - 3} more kinds" if len(raw.errors) > 3 else ""
    return f"{raw.socket_errors} failed: {shown}{more}"


def run_hey(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    concurrency: int,
    duration_s: float,
    timeout_s: float = 10,
    system: str | None = None,
) -> LoadResult:
    """POST `body` with `headers` to `url` from `concurrency` closed-loop workers for
    `duration_s` (any positive number of seconds, to the millisecond).

    For KServe requests pass `tritonkit_client.kserve_codec.encode_request(...)`'s body and
    `request_headers(header_length)` (Inference-Header-Content-Length, Content-Type).

    Content-Type defaults to application/octet-stream; Content-Length comes from the body.
    `timeout_s` (per request) is rounded up to whole seconds, the unit hey accepts. Each worker
    finishes its request in flight when the window ends, so the result's `duration_s` is the
    window plus that drain. A hey failure or unreadable output raises BenchmarkError carrying
    hey's stderr; a run in which no request got an answer raises NoCompletedRequestsError
    naming the errors.
    """
    if concurrency < 1:
        raise BenchmarkError(f"concurrency must be >= 1, got {concurrency}")
    _check_url(url)
    split = hey_headers(headers)
    window_s = _window_ms(duration_s) / 1e3
    timeout_whole_s = _timeout_whole_s(timeout_s)
    hey = find_hey()
    with tempfile.TemporaryDirectory(prefix="hey-") as tmp:
        body_file = Path(tmp) / "body.bin"
        body_file.write_bytes(body)
        command = hey_command(hey, url, body_file, split, concurrency=concurrency,
                              duration_s=duration_s, timeout_s=timeout_s)
        logger.debug("running %s", " ".join(command))
        limit_s = window_s + timeout_whole_s + SUBPROCESS_SLACK_S
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=limit_s, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise BenchmarkError(f"hey did not finish within {limit_s:.0f} s: {url}") from e
        except OSError as e:
            raise BenchmarkError(f"cannot run {hey}: {e}") from e
    if done.returncode != 0:
        raise BenchmarkError(
            f"hey exited with {done.returncode} against {url}: "
            f"{done.stderr.strip()[:1000]}\n{done.stdout.strip()[-1000:]}"
        )
    try:
        raw = parse_hey_output(done.stdout)
    except BenchmarkError as e:
        raise BenchmarkError(f"{e}\nhey stderr: {done.stderr.strip()[:1000]}") from e
    if raw.responses == 0:
        raise NoCompletedRequestsError(
            f"no request got an answer from {url} in {window_s:g} s ({_error_summary(raw)})")
    result = LoadResult.from_raw(raw, concurrency=concurrency, system=system)
    if result.errors:
        logger.warning(
            "%s at concurrency %d: %d errors (%d non-2xx; %s)",
            url, concurrency, result.errors, raw.non_2xx, _error_summary(raw),
        )
    logger.info(
        "%s c=%d: %.1f req/s, p50 %.1f ms, p99 %.1f ms, %d errors; latencies sum to %.2f x "
        "(workers x Total)",
        system or url, concurrency, result.throughput_rps, result.p50_ms, result.p99_ms,
        result.errors, raw.average_s * raw.responses / (concurrency * raw.total_s),
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
    """run_hey at each concurrency in order (same body, same headers, same duration).

    A level in which no request gets an answer (e.g. every request timed out while the server
    was still warming up) is measured again with a window three times longer, up to
    `longer_windows` times. A slow answer alone never needs this: hey waits for the requests
    in flight at the end of the window.
    """
    if not concurrencies:
        raise BenchmarkError("sweep needs at least one concurrency")
    results = []
    for c in concurrencies:
        window = duration_s
        for attempt in range(longer_windows + 1):
            try:
                results.append(run_hey(url, body, headers, concurrency=c, duration_s=window,
                                       timeout_s=timeout_s, system=system))
                break
            except NoCompletedRequestsError:
                if attempt == longer_windows:
                    raise
                window *= 3
                logger.warning("no request got an answer at concurrency %d; measuring again "
                               "over %.1f s", c, window)
    return results
