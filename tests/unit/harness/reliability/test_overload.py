from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.benchmarks.errors import BenchmarkError
from harness.benchmarks.hey_driver import find_hey
from harness.reliability.errors import ReliabilityError
from harness.reliability.hey_overload import (
    CSV_HEADER,
    AnsweredRequest,
    OpenLoopRun,
    offer_load,
    parse_csv,
    plan_open_loop,
)
from harness.reliability.overload import NO_ANSWER, MessageProbe, classify

QUEUE_FULL = "in ensemble 'digits', Exceeds maximum queue size"


class _Handler(BaseHTTPRequestHandler):
    """Every third request: 200; the others alternate 503 queue-full and 500 "boom"."""

    counter = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.lock:
            type(self).counter += 1
            n = type(self).counter
        if n % 3 == 0:
            status, body = 200, b'{"outputs": []}'
        elif n % 3 == 1:
            status, body = 503, json.dumps({"error": QUEUE_FULL}).encode()
        else:
            status, body = 500, json.dumps({"error": "boom"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server_url() -> Iterator[str]:
    _Handler.counter = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v2/models/digits/infer"
    finally:
        server.shutdown()
        server.server_close()


def test_plan_open_loop_splits_the_rate_over_workers_and_processes() -> None:
    plan = plan_open_loop(12_000.0, 8.0, workers=510, processes=4, timeout_s=29.5)
    assert plan.workers == 508  # a multiple of the processes
    assert plan.per_worker_rate == pytest.approx(12_000 / 508)
    assert plan.requests_per_worker == round(12_000 / 508 * 8)
    assert plan.sent == 508 * plan.requests_per_worker
    assert plan.target_rate_per_s == pytest.approx(12_000)
    assert plan.window_s == pytest.approx(8.0, rel=0.01)
    assert plan.timeout_s == 30
    with pytest.raises(ReliabilityError, match="positive rate"):
        plan_open_loop(0.0, 8.0)
    with pytest.raises(ReliabilityError, match="workers >= processes"):
        plan_open_loop(100.0, 1.0, workers=2, processes=4)


def test_parse_csv_reads_rows_and_shifts_offsets() -> None:
    text = (f"{CSV_HEADER}\n0.0120,0.0001,0.0000,0.0000,0.0118,0.0001,200,0.0456\n"
            "0.0009,0.0000,0.0000,0.0000,0.0008,0.0001,503,0.0500\n")
    rows = parse_csv(text, start_offset_s=1.0)
    assert [(r.seconds, r.status) for r in rows] == [(0.012, 200), (0.0009, 503)]
    assert [r.sent_at_s for r in rows] == pytest.approx([1.0456, 1.05])
    assert parse_csv(CSV_HEADER + "\n") == []
    with pytest.raises(ReliabilityError, match="no CSV header"):
        parse_csv("Summary:\n  Total: 1.0 secs\n")
    with pytest.raises(ReliabilityError, match="line 2 has 3 fields"):
        parse_csv(f"{CSV_HEADER}\n1,2,3\n")


def test_probe_names_statuses_and_classify_accounts_for_every_request(server_url: str) -> None:
    with MessageProbe(server_url, b"x", {"Content-Type": "application/octet-stream"},
                      interval_s=0.005) as probe:
        while sum(probe.answers.values()) < 12:
            threading.Event().wait(0.01)
    assert probe.messages_of(503) == [QUEUE_FULL]
    assert probe.messages_of(500) == ["boom"]
    assert probe.kinds()[f"HTTP 503: {QUEUE_FULL}"] >= 4
    plan = plan_open_loop(100.0, 0.12, workers=4, processes=1)  # 4 x 3 = 12 requests sent
    answered = tuple(AnsweredRequest(sent_at_s=i / 100, seconds=0.001, status=status)
                     for i, status in enumerate([200, 503, 503, 503, 500, 404, 200, 200, 503]))
    run = OpenLoopRun(plan=plan, answered=answered, seconds=0.2)
    kinds, queue_full = classify(run, probe)
    assert queue_full == {503}
    assert kinds == {f"HTTP 503: {QUEUE_FULL}": 4, "HTTP 500: boom": 1,
                     "HTTP 404: (the probe saw no answer with it)": 1, NO_ANSWER: 3}
    assert run.unanswered == 3
    assert run.offered_per_s == pytest.approx(12 / 0.08)


def test_offer_load_with_hey_keeps_every_answer(server_url: str) -> None:
    try:
        find_hey()
    except BenchmarkError:
        pytest.skip("hey is not installed (scripts/install_system_deps.sh installs it)")
    plan = plan_open_loop(200.0, 0.5, workers=8, processes=2, timeout_s=5)
    run = offer_load(server_url, b"body", {"Content-Type": "application/octet-stream"}, plan)
    assert run.sent == 8 * plan.requests_per_worker == 96
    assert len(run.answered) == run.sent and run.unanswered == 0
    statuses = sorted(a.status for a in run.answered)
    assert statuses.count(200) == 32 and statuses.count(503) == 32 and statuses.count(500) == 32
    # hey paces each worker: it never sends faster than planned (the lower side depends on
    # how busy the host is, so it is a benchmark figure, not a test).
    assert 0.0 < run.offered_per_s < 1.5 * plan.workers * plan.per_worker_rate
    assert run.offered_per_s == pytest.approx(run.sent / run.send_window_s)
    assert all(a.seconds < plan.timeout_s for a in run.answered)
