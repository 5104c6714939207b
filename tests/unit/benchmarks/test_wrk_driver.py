"""The wrk driver against a real wrk and a tiny real HTTP server on 127.0.0.1 (1 s runs)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from benchmarks.errors import BenchmarkError
from benchmarks.wrk_driver import (
    WRK_SCRIPT,
    LoadResult,
    NoCompletedRequestsError,
    WrkRaw,
    find_wrk,
    parse_wrk_output,
    run_wrk,
    sweep,
    wrk_command,
)

# A body with NUL and high bytes, like a KServe binary request: wrk must send it unchanged.
BODY = b'{"inputs":[]}' + bytes(range(256)) + b"\x00\x00tail"
HEADER_LENGTH = "Inference-Header-Content-Length"
HEADERS = {HEADER_LENGTH: "13"}

pytestmark = pytest.mark.skipif(
    not any(Path(p).is_file() for p in ("/usr/bin/wrk", "/usr/local/bin/wrk")),
    reason="wrk is not installed (apt-get install -y wrk)",
)


@dataclass
class Seen:
    """What the server received (guarded by `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: int = 0
    rejected: int = 0
    content_types: set[str] = field(default_factory=set)


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


@pytest.fixture
def server() -> Iterator[LocalServer]:
    seen = Seen()
    handler = type("Handler", (CheckingHandler,), {"seen": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalServer(url=f"http://127.0.0.1:{httpd.server_address[1]}/v2/models/m/infer",
                          seen=seen)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def raw_wrk_stdout(url: str, tmp_path: Path) -> str:
    """Run the real wrk with the driver's script for 1 s and return its whole stdout."""
    import subprocess

    script = tmp_path / "post.lua"
    script.write_text(WRK_SCRIPT, encoding="utf-8")
    body = tmp_path / "body.bin"
    body.write_bytes(BODY)
    command = wrk_command(find_wrk(), url, script, body, [f"{HEADER_LENGTH}: 13"],
                          concurrency=2, duration_s=1, threads=2, timeout_s=5)
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    return done.stdout


# --------------------------------------------------------------------------- parsing


def test_real_wrk_output_holds_one_parsable_json_line(server: LocalServer,
                                                      tmp_path: Path) -> None:
    stdout = raw_wrk_stdout(server.url, tmp_path)
    json_lines = [line for line in stdout.splitlines() if line.startswith('{"wrk_json"')]
    assert len(json_lines) == 1
    assert "Latency Distribution" in stdout  # wrk's own report surrounds the line
    printed = json.loads(json_lines[0])

    raw = parse_wrk_output(stdout)
    assert raw.requests == printed["requests"] > 10
    assert 1_000_000 <= raw.duration_us < 3_000_000
    assert raw.non_2xx == 0 and raw.socket_errors == 0
    assert 0 < raw.p50_us <= raw.p90_us <= raw.p95_us <= raw.p99_us <= raw.max_us
    assert raw.p99_us == printed["p99_us"]
    # the server answered 200 to every request wrk completed (a few may be in flight at stop)
    assert server.seen.ok >= raw.requests and server.seen.rejected == 0


def test_parse_picks_the_marked_line_among_noise() -> None:
    line = json.dumps({"wrk_json": 1, "requests": 10, "duration_us": 2_000_000, "bytes": 5,
                       "connect": 1, "read": 2, "write": 0, "status": 3, "timeout": 4,
                       "non_2xx": 3, "p50_us": 100.5, "p90_us": 200, "p95_us": 300,
                       "p99_us": 400, "max_us": 500, "mean_us": 150})
    stdout = "\n".join(["Running 2s test @ http://x", '{"not": "ours"}', "{broken json",
                        "  " + line + "  ", "Requests/sec: 5.00"])
    raw = parse_wrk_output(stdout)
    assert raw == WrkRaw(requests=10, duration_us=2_000_000, connect_errors=1, read_errors=2,
                         write_errors=0, timeout_errors=4, non_2xx=3, p50_us=100.5,
                         p90_us=200.0, p95_us=300.0, p99_us=400.0, max_us=500.0)
    assert raw.socket_errors == 7


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        ("Running 1s test\nRequests/sec: 0\n", "no result line"),
        ('{"wrk_json":1,"requests":3}', "'duration_us'"),
        ('{"wrk_json":1,"requests":-1,"duration_us":1,"connect":0,"read":0,"write":0,'
         '"timeout":0,"non_2xx":0,"p50_us":1,"p90_us":1,"p95_us":1,"p99_us":1,"max_us":1}',
         "invalid 'requests'"),
        ('{"wrk_json":1,"requests":"7","duration_us":1,"connect":0,"read":0,"write":0,'
         '"timeout":0,"non_2xx":0,"p50_us":1,"p90_us":1,"p95_us":1,"p99_us":1,"max_us":1}',
         "'requests'"),
    ],
)
def test_parse_rejects_bad_output(stdout: str, message: str) -> None:
    with pytest.raises(BenchmarkError, match=message):
        parse_wrk_output(stdout)


# --------------------------------------------------------------------------- LoadResult maths


def test_load_result_from_raw_converts_units_and_sums_errors() -> None:
    raw = WrkRaw(requests=500, duration_us=2_000_000, connect_errors=1, read_errors=2,
                 write_errors=3, timeout_errors=4, non_2xx=5, p50_us=1500, p90_us=2500,
                 p95_us=3000, p99_us=9000, max_us=12500)
    result = LoadResult.from_raw(raw, concurrency=8, system="triton")
    assert result == LoadResult(system="triton", concurrency=8, requests=500, duration_s=2.0,
                                throughput_rps=250.0, p50_ms=1.5, p90_ms=2.5, p95_ms=3.0,
                                p99_ms=9.0, max_ms=12.5, errors=15)
    assert result.labelled("fastapi").system == "fastapi"


def test_load_result_rejects_a_zero_duration() -> None:
    raw = WrkRaw(requests=1, duration_us=0, connect_errors=0, read_errors=0, write_errors=0,
                 timeout_errors=0, non_2xx=0, p50_us=1, p90_us=1, p95_us=1, p99_us=1, max_us=1)
    with pytest.raises(BenchmarkError, match="duration"):
        LoadResult.from_raw(raw, concurrency=1)


def test_command_rounds_durations_up_to_whole_seconds() -> None:
    command = wrk_command(Path("/usr/bin/wrk"), "http://h/p", Path("s.lua"), Path("b.bin"),
                          ["A: b"], concurrency=4, duration_s=1.2, threads=2, timeout_s=0.5)
    assert command[1:6] == ["--connections=4", "--threads=2", "--duration=2s", "--timeout=1s",
                            "--latency"]
    assert command[-4:] == ["http://h/p", "--", "b.bin", "A: b"]


# --------------------------------------------------------------------------- run_wrk


def test_run_wrk_measures_a_real_server(server: LocalServer) -> None:
    result = run_wrk(server.url, BODY, HEADERS, concurrency=2, duration_s=1, system="local")
    assert result.system == "local" and result.concurrency == 2
    assert result.errors == 0
    assert result.requests > 10
    assert 1.0 <= result.duration_s < 3.0
    assert result.throughput_rps == pytest.approx(result.requests / result.duration_s)
    assert 0 < result.p50_ms <= result.p90_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
    assert server.seen.ok >= result.requests and server.seen.rejected == 0
    assert server.seen.content_types == {"application/octet-stream"}  # the driver's default


def test_run_wrk_counts_non_2xx_answers_as_errors(server: LocalServer) -> None:
    result = run_wrk(server.url, BODY, {HEADER_LENGTH: "12"}, concurrency=1, duration_s=1)
    assert result.requests > 0
    assert result.errors == result.requests
    assert server.seen.ok == 0 and server.seen.rejected >= result.requests


def test_sweep_runs_each_concurrency(server: LocalServer) -> None:
    results = sweep(server.url, BODY, HEADERS, [1, 3], 1, system="local")
    assert [(r.concurrency, r.system, r.errors) for r in results] == [(1, "local", 0),
                                                                       (3, "local", 0)]


def test_run_wrk_without_a_server_raises_with_wrks_stderr() -> None:
    with pytest.raises(BenchmarkError, match="wrk exited with 1 .*unable to connect"):
        run_wrk(f"http://127.0.0.1:{free_port()}/x", BODY, HEADERS, concurrency=1,
                duration_s=1)


def test_run_wrk_against_a_silent_server_raises() -> None:
    """A socket that listens but never answers: no request completes."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/x"
        with pytest.raises(BenchmarkError, match=r"no request completed .*socket errors"):
            run_wrk(url, BODY, HEADERS, concurrency=1, duration_s=1, timeout_s=0.5)


def test_run_wrk_reports_wrk_failures_with_its_stderr() -> None:
    with pytest.raises(BenchmarkError, match="wrk exited"):
        run_wrk("no-scheme-host", BODY, HEADERS, concurrency=1, duration_s=1)


@pytest.mark.parametrize(
    ("headers", "concurrency", "threads", "message"),
    [
        (HEADERS, 0, None, "concurrency"),
        (HEADERS, 2, 3, "threads"),
        ({"Bad\nName": "x"}, 1, None, "invalid HTTP header"),
        ({"Content-Length": "3"}, 1, None, "Content-Length"),
    ],
)
def test_run_wrk_rejects_bad_arguments(headers: dict[str, str], concurrency: int,
                                       threads: int | None, message: str) -> None:
    with pytest.raises(BenchmarkError, match=message):
        run_wrk("http://127.0.0.1:1/x", BODY, headers, concurrency=concurrency, duration_s=1,
                threads=threads)


class SlowHandler(http.server.BaseHTTPRequestHandler):
    """Answers each request after 1.5 s: longer than a 1 s window."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(1.5)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def test_sweep_measures_a_slow_level_again_over_a_longer_window() -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/slow"
        (result,) = sweep(url, BODY, HEADERS, [1], 1, timeout_s=5)
        assert result.requests >= 1
        assert result.duration_s >= 2.5  # the 3 s window, not the 1 s one
        with pytest.raises(NoCompletedRequestsError):
            sweep(url, BODY, HEADERS, [1], 1, timeout_s=5, longer_windows=0)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
