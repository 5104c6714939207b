"""The hey driver against a real hey and tiny real HTTP servers on 127.0.0.1 (runs of 1-2 s),
plus hey's summary parser on crafted text."""

from __future__ import annotations

import contextlib
import http.server
import math
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.benchmarks import hey_driver
from harness.benchmarks.errors import BenchmarkError
from harness.benchmarks.hey_driver import (
    ErrorCount,
    HeyRaw,
    LoadResult,
    NoCompletedRequestsError,
    Percentile,
    StatusCount,
    find_hey,
    hey_command,
    hey_headers,
    hey_ranks,
    parse_hey_output,
    run_hey,
    sweep,
)

# A body with NUL and high bytes, like a KServe binary request: hey must send it unchanged.
BODY = b'{"inputs":[]}' + bytes(range(256)) + b"\x00\x00tail"
HEADER_LENGTH = "Inference-Header-Content-Length"
HEADERS = {HEADER_LENGTH: "13"}

needs_hey = pytest.mark.skipif(
    not any(Path(p).is_file() for p in ("/usr/bin/hey", "/usr/local/bin/hey")),
    reason="hey is not installed (apt-get install -y hey)",
)


@dataclass
class Seen:
    """What the server received (guarded by `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: int = 0
    rejected: int = 0
    content_types: set[str] = field(default_factory=set)
    accept_encodings: set[str] = field(default_factory=set)


class CheckingHandler(http.server.BaseHTTPRequestHandler):
    """200 only for the exact BODY with the expected header; 400 otherwise."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    seen: Seen

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        good = body == BODY and self.headers.get(HEADER_LENGTH) == "13"
        with self.seen.lock:
            self.seen.content_types.add(self.headers.get("Content-Type", ""))
            self.seen.accept_encodings.add(self.headers.get("Accept-Encoding", ""))
            if good:
                self.seen.ok += 1
            else:
                self.seen.rejected += 1
        answer = b"ok" if good else b"bad request"
        self.send_response(200 if good else 400)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass(frozen=True)
class LocalServer:
    url: str
    seen: Seen


@contextlib.contextmanager
def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free loopback port; yields the infer URL, always shuts down."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v2/models/m/infer"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    seen = Seen()
    handler = type("Handler", (CheckingHandler,), {"seen": seen})
    with serve(handler) as url:
        yield LocalServer(url=url, seen=seen)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def raw_hey_stdout(url: str, tmp_path: Path, *, concurrency: int, duration_s: float) -> str:
    """Run the real hey with the driver's command line and return its whole stdout."""
    body = tmp_path / "body.bin"
    body.write_bytes(BODY)
    command = hey_command(find_hey(), url, body, hey_headers(HEADERS),
                          concurrency=concurrency, duration_s=duration_s, timeout_s=5)
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    return done.stdout


def summary_text(*, total: float, slowest: float, fastest: float, average: float,
                 percentiles: Mapping[int, float], statuses: Mapping[int, int],
                 errors: Mapping[str, int] | None = None, rps: float | None = None) -> str:
    """Text laid out as hey 0.1.4 prints its summary (what the parser reads)."""
    errors = errors or {}
    counted = sum(statuses.values()) + sum(errors.values())
    mean = " NaN" if math.isnan(average) else f"{average:4.4f}"  # Go prints NaN so
    lines = ["", "Summary:", f"  Total:\t{total:4.4f} secs", f"  Slowest:\t{slowest:4.4f} secs",
             f"  Fastest:\t{fastest:4.4f} secs", f"  Average:\t{mean} secs",
             f"  Requests/sec:\t{(counted / total if rps is None else rps):4.4f}", "  ",
             "  Total data:\t88 bytes", "", "Response time histogram:",
             f"  {fastest:4.3f} [1]\t|■", f"  {slowest:4.3f} [3]\t|■■■", "", "",
             "Latency distribution:"]
    lines += [f"  {p}% in {s:4.4f} secs" for p, s in percentiles.items()]
    lines += ["  0% in 0.0000 secs"] * (7 - len(percentiles))
    lines += ["", "Details (average, fastest, slowest):",
              "  DNS+dialup:\t0.0000 secs, 0.0001 secs, 0.0002 secs", "",
              "Status code distribution:"]
    lines += [f"  [{code}]\t{count} responses" for code, count in statuses.items()]
    if errors:
        lines += ["", "Error distribution:"]
        lines += [f"  [{count}]\t{message}" for message, count in errors.items()]
    return "\n".join([*lines, "", ""])


FULL_DISTRIBUTION = {10: 0.0010, 25: 0.0012, 50: 0.0015, 75: 0.0020, 90: 0.0025, 95: 0.0030,
                     99: 0.0090}


# --------------------------------------------------------------------------- parsing


@needs_hey
def test_real_hey_output_parses_and_adds_up(server: LocalServer, tmp_path: Path) -> None:
    stdout = raw_hey_stdout(server.url, tmp_path, concurrency=2, duration_s=1)
    assert "Latency distribution:" in stdout and "Status code distribution:" in stdout
    raw = parse_hey_output(stdout)
    # the same count read independently from hey's text
    assert raw.responses == int(re.findall(r"\[200\]\t(\d+) responses", stdout)[0]) > 10
    assert raw.status_codes == (StatusCount(code=200, count=raw.responses),)
    assert raw.errors == () and raw.non_2xx == 0 and raw.socket_errors == 0
    # hey waits for the requests in flight: it counted every answer the server sent
    assert raw.responses == server.seen.ok and server.seen.rejected == 0
    assert 1.0 <= raw.total_s < 3.0
    assert raw.responses == pytest.approx(raw.rps * raw.total_s, abs=1)
    assert [p.percent for p in raw.distribution] == [10, 25, 50, 75, 90, 95, 99]
    assert 0 <= raw.fastest_s <= raw.percentile_s(50) <= raw.percentile_s(99) <= raw.slowest_s
    # closed loop: two workers cannot have spent more than two windows
    assert raw.average_s * raw.responses <= 2 * raw.total_s + 1e-4 * raw.responses


class SlowHandler(http.server.BaseHTTPRequestHandler):
    """Answers each request after 0.3 s."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(0.3)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@needs_hey
def test_real_hey_with_three_responses_prints_the_percentiles_hey_ranks_predicts(
        tmp_path: Path) -> None:
    """Three workers, each with one 0.3 s request in a 0.1 s window: 3 responses, for which
    hey prints p10 and p25 only; p50..p99 are then the slowest response."""
    with serve(SlowHandler) as url:
        raw = parse_hey_output(raw_hey_stdout(url, tmp_path, concurrency=3, duration_s=0.1))
    assert raw.responses == 3
    assert 0.3 <= raw.total_s < 2.0  # the window plus the drain of the requests in flight
    assert [p.percent for p in raw.distribution] == [10, 25] == list(hey_ranks(3))
    assert raw.percentile_s(50) == raw.percentile_s(99) == raw.slowest_s >= 0.3


def test_hey_ranks_follow_heys_walk() -> None:
    assert hey_ranks(1) == {}
    assert hey_ranks(2) == {10: 1}
    assert hey_ranks(3) == {10: 1, 25: 2}  # p25 shares p10's index: moved one on
    assert hey_ranks(20) == {10: 2, 25: 5, 50: 10, 75: 15, 90: 18, 95: 19}
    assert hey_ranks(100) == {10: 10, 25: 25, 50: 50, 75: 75, 90: 90, 95: 95, 99: 99}
    assert hey_ranks(1000)[99] == 990


def test_parse_reads_every_section() -> None:
    text = summary_text(total=2.0004, slowest=0.5, fastest=0.001, average=0.0021,
                        percentiles=FULL_DISTRIBUTION, statuses={503: 7, 200: 990, 400: 3},
                        errors={'Post "http://x/y": EOF': 2,
                                'Post "http://x/y": context deadline exceeded': 5})
    raw = parse_hey_output(text)
    assert raw == HeyRaw(
        total_s=2.0004, slowest_s=0.5, fastest_s=0.001, average_s=0.0021,
        rps=float(f"{1007 / 2.0004:4.4f}"),
        distribution=tuple(Percentile(percent=p, seconds=s)
                           for p, s in FULL_DISTRIBUTION.items()),
        status_codes=(StatusCount(code=200, count=990), StatusCount(code=400, count=3),
                      StatusCount(code=503, count=7)),
        errors=(ErrorCount(message='Post "http://x/y": context deadline exceeded', count=5),
                ErrorCount(message='Post "http://x/y": EOF', count=2)),
    )
    assert (raw.responses, raw.non_2xx, raw.socket_errors) == (1000, 10, 7)
    assert raw.percentile_s(99) == 0.009


def test_parse_reads_a_run_without_any_response() -> None:
    text = summary_text(total=0.505, slowest=0, fastest=0, average=float("nan"),
                        percentiles={}, statuses={},
                        errors={"dial tcp 127.0.0.1:1: connect: connection refused": 4598})
    raw = parse_hey_output(text)
    assert raw.responses == 0 and raw.socket_errors == 4598 and raw.distribution == ()
    with pytest.raises(BenchmarkError, match="no latency percentiles"):
        raw.percentile_s(50)
    with pytest.raises(BenchmarkError, match="no response"):
        LoadResult.from_raw(raw, concurrency=1)


def _good(**changes: object) -> str:
    fields: dict[str, object] = dict(total=1.0, slowest=0.01, fastest=0.001, average=0.002,
                                     percentiles=FULL_DISTRIBUTION, statuses={200: 400})
    fields.update(changes)
    return summary_text(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        ("Usage: hey [options...] <url>\n", "printed no summary"),
        (_good().replace("  Total:\t1.0000 secs\n", ""), "0 'total_s' lines"),
        (_good().replace("Average:\t0.0020", "Average:\tfast"), "0 'average_s' lines"),
        (_good().replace("Slowest:\t0.0100", "Slowest:\t-0.0100"), "invalid 'slowest_s'"),
        (_good(total=0.0, rps=0.0), "non-positive Total"),
        (_good(rps=350.0), r"counts disagree: Requests/sec 350.0 x Total 1.0 s"),
        (_good(statuses={200: 1_000_000}), "covers only the first 1000000"),
        (_good(percentiles={10: 0.001, 25: 0.001, 50: 0.0015}),
         r"lists the percentiles \[10, 25, 50\]; for 400 responses it computes"),
        (_good(percentiles={**FULL_DISTRIBUTION, 90: 0.0001}), "out of order"),
        (_good(slowest=0.005), "out of order"),
        (_good().replace("[200]\t400 responses", "[200]\tmany responses"),
         "unreadable status code line"),
        (_good().replace("  10% in 0.0010 secs", "  10% in soon"),
         "unreadable latency distribution line"),
        (_good(statuses={}, average=float("nan"), errors={"EOF": 400}).replace(
            "Latency distribution:", "Latency distribution:\n  50% in 0.0010 secs"),
         "percentiles without any response"),
    ],
)
def test_parse_rejects_bad_output(stdout: str, message: str) -> None:
    with pytest.raises(BenchmarkError, match=message):
        parse_hey_output(stdout)


# --------------------------------------------------------------------------- LoadResult maths


def test_load_result_from_raw_converts_units_and_sums_errors() -> None:
    raw = parse_hey_output(summary_text(
        total=2.0, slowest=0.0125, fastest=0.001, average=0.002,
        percentiles={10: 0.001, 25: 0.0012, 50: 0.0015, 75: 0.002, 90: 0.0025, 95: 0.003,
                     99: 0.009},
        statuses={200: 490, 500: 10}, errors={"EOF": 3, "connection reset by peer": 2}))
    result = LoadResult.from_raw(raw, concurrency=8, system="triton")
    assert result == LoadResult(system="triton", concurrency=8, requests=500, duration_s=2.0,
                                throughput_rps=250.0, p50_ms=1.5, p90_ms=2.5, p95_ms=3.0,
                                p99_ms=9.0, max_ms=12.5, errors=15)
    assert result.labelled("fastapi").system == "fastapi"


def test_load_result_keeps_heys_resolution() -> None:
    raw = parse_hey_output(_good(percentiles={**FULL_DISTRIBUTION, 99: 0.0081}, slowest=0.0481))
    result = LoadResult.from_raw(raw, concurrency=1)
    assert (result.p99_ms, result.max_ms) == (8.1, 48.1)  # not 48.099999999999994


def test_load_result_rejects_latencies_one_worker_cannot_have_spent() -> None:
    # wrk 4.1's numbers from one connection: 2401 requests in 4.0 s at mean 29.2 ms
    raw = parse_hey_output(summary_text(
        total=4.0027, slowest=0.5014, fastest=0.0004, average=0.0292,
        percentiles={10: 0.0005, 25: 0.0009, 50: 0.0014, 75: 0.0030, 90: 0.0513, 95: 0.2763,
                     99: 0.4564},
        statuses={200: 2401}))
    with pytest.raises(BenchmarkError,
                       match="inconsistent: 2401 responses at mean 29.20 ms add up to 70.1 s"):
        LoadResult.from_raw(raw, concurrency=1)
    # the same counts are possible from 20 workers
    assert LoadResult.from_raw(raw, concurrency=20).p99_ms == pytest.approx(456.4)


# --------------------------------------------------------------------------- command line


def test_command_posts_the_body_file_for_the_window_in_milliseconds() -> None:
    split = hey_headers({HEADER_LENGTH: "13", "content-type": "application/x-test"})
    command = hey_command(Path("/usr/bin/hey"), "http://h/p", Path("b.bin"), split,
                          concurrency=4, duration_s=1.25, timeout_s=0.5)
    assert command == ["/usr/bin/hey", "-z", "1250ms", "-c", "4", "-m", "POST", "-D", "b.bin",
                       "-T", "application/x-test", "-t", "1", "-disable-compression",
                       "-H", f"{HEADER_LENGTH}: 13", "http://h/p"]


def test_find_hey_falls_back_to_debians_path(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    fallback = tmp_path / "hey"
    fallback.write_text("")
    monkeypatch.setattr(hey_driver, "HEY_FALLBACK_PATH", fallback)
    assert find_hey() == fallback
    monkeypatch.setattr(hey_driver, "HEY_FALLBACK_PATH", tmp_path / "missing")
    with pytest.raises(BenchmarkError, match="apt-get install -y hey"):
        find_hey()


# --------------------------------------------------------------------------- run_hey


@needs_hey
def test_run_hey_measures_a_real_server(server: LocalServer) -> None:
    result = run_hey(server.url, BODY, HEADERS, concurrency=2, duration_s=1, system="local")
    assert result.system == "local" and result.concurrency == 2
    assert result.errors == 0
    assert result.requests == server.seen.ok > 10 and server.seen.rejected == 0
    assert 1.0 <= result.duration_s < 3.0
    assert result.throughput_rps == pytest.approx(result.requests / result.duration_s)
    assert 0 <= result.p50_ms <= result.p90_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
    assert server.seen.content_types == {"application/octet-stream"}  # the driver's default
    assert server.seen.accept_encodings == {""}  # no gzip: Triton would compress otherwise


@needs_hey
def test_run_hey_passes_the_content_type(server: LocalServer) -> None:
    run_hey(server.url, BODY, {**HEADERS, "Content-Type": "application/x-test"},
            concurrency=1, duration_s=0.3)
    assert server.seen.content_types == {"application/x-test"}


@needs_hey
def test_run_hey_counts_non_2xx_answers_as_errors(server: LocalServer) -> None:
    result = run_hey(server.url, BODY, {HEADER_LENGTH: "12"}, concurrency=1, duration_s=0.5)
    assert result.requests == server.seen.rejected > 0
    assert result.errors == result.requests
    assert server.seen.ok == 0


@needs_hey
def test_run_hey_counts_altered_bodies_as_errors(server: LocalServer) -> None:
    result = run_hey(server.url, BODY[:-1] + b"\x01", HEADERS, concurrency=1, duration_s=0.3)
    assert result.errors == result.requests == server.seen.rejected > 0


@needs_hey
def test_sweep_runs_each_concurrency_in_order(server: LocalServer) -> None:
    results = sweep(server.url, BODY, HEADERS, [3, 1], 0.5, system="local")
    assert [(r.concurrency, r.system, r.errors) for r in results] == [(3, "local", 0),
                                                                       (1, "local", 0)]
    assert sum(r.requests for r in results) == server.seen.ok


@needs_hey
def test_run_hey_without_a_server_counts_refusals() -> None:
    with pytest.raises(NoCompletedRequestsError,
                       match=r"no request got an answer .* failed: \d+ x .*connection refused"):
        run_hey(f"http://127.0.0.1:{free_port()}/x", BODY, HEADERS, concurrency=1,
                duration_s=0.3)


@needs_hey
def test_run_hey_against_a_silent_server_counts_timeouts() -> None:
    """A socket that listens but never answers: the request times out after 1 s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/x"
        with pytest.raises(NoCompletedRequestsError, match=r"1 failed: 1 x .*Timeout"):
            run_hey(url, BODY, HEADERS, concurrency=1, duration_s=0.2, timeout_s=0.5)


@pytest.mark.parametrize(
    ("url", "headers", "concurrency", "duration_s", "message"),
    [
        ("http://127.0.0.1:1/x", HEADERS, 0, 1, "concurrency"),
        ("no-scheme-host", HEADERS, 1, 1, "http:// or https:// URL"),
        ("http://127.0.0.1:1/x", {"Bad Name": "x"}, 1, 1, "invalid HTTP header"),
        ("http://127.0.0.1:1/x", {"X-A": "a\nb"}, 1, 1, "invalid HTTP header"),
        ("http://127.0.0.1:1/x", {"X-A": " "}, 1, 1, "invalid HTTP header"),
        ("http://127.0.0.1:1/x", {"Content-Length": "3"}, 1, 1, "set by hey"),
        ("http://127.0.0.1:1/x", {"host": "h"}, 1, 1, "set by hey"),
        ("http://127.0.0.1:1/x", HEADERS, 1, 0, "duration_s"),
    ],
)
def test_run_hey_rejects_bad_arguments(url: str, headers: dict[str, str], concurrency: int,
                                       duration_s: float, message: str) -> None:
    with pytest.raises(BenchmarkError, match=message):
        run_hey(url, BODY, headers, concurrency=concurrency, duration_s=duration_s)


class FirstSlowHandler(http.server.BaseHTTPRequestHandler):
    """Answers the first request after 2 s (a server warming up), the others at once."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    answered = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            first = type(self).answered == 0
            type(self).answered += 1
        if first:
            time.sleep(2)
        try:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except OSError:  # the client gave up on the slow answer
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


@needs_hey
def test_sweep_measures_a_level_without_answers_again_over_a_longer_window() -> None:
    handler = type("Handler", (FirstSlowHandler,), {"answered": 0})
    with serve(handler) as url:
        (result,) = sweep(url, BODY, HEADERS, [1], 0.5, timeout_s=1)
        assert result.errors == 0 and result.requests > 0
        assert result.duration_s >= 1.5  # the 1.5 s window, not the 0.5 s one
    handler = type("Handler", (FirstSlowHandler,), {"answered": 0})
    with serve(handler) as url, pytest.raises(NoCompletedRequestsError):
        sweep(url, BODY, HEADERS, [1], 0.5, timeout_s=1, longer_windows=0)
