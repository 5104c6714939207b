"""Kill a Python-backend stub under load: the server must stay live, requests in the window
must fail explicitly (never a wrong answer), and later requests must succeed."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass

from harness.reliability.errors import ReliabilityError
from harness.reliability.load_driver import LoadDriver, LoadResult, image_request, output_check
from harness.reliability.payloads import valid_png
from harness.reliability.server_processes import stub_pids
from harness.reliability.wire import WireClient
from tritonkit.server import LocalTriton

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class StubKillResult:
    model: str
    killed_pid: int
    requests: int
    failed: int
    wrong_answers: int
    window_s: float  # from the kill to the end of the last failed request (0: none failed)
    recovered: bool  # server live and ready, and requests succeed again after the window
    server_live: bool
    error_kinds: dict[str, int]
    first_error: str
    new_stub_pids: tuple[int, ...]


def _window(result: LoadResult, killed_at: float) -> float:
    ends = [r.sent_at + r.seconds for r in result.records if not r.ok]
    return max(0.0, max(ends) - killed_at) if ends else 0.0


def kill_stub_under_load(
    server: LocalTriton, *, pipeline: str = "digits", model: str = "digits_preprocess",
    input_name: str = "IMAGE", output_name: str = "PROBABILITIES", concurrency: int = 8,
    before_s: float = 2.0, after_s: float = 8.0,
) -> StubKillResult:
    """SIGKILL `model`'s stub while `pipeline` serves `concurrency` clients."""
    pids = stub_pids(server, model)
    if not pids:
        raise ReliabilityError(f"no Python-backend stub found for model {model!r}")
    driver = LoadDriver(server.urls.grpc, timeout_s=30.0)
    request = image_request(pipeline, input_name, valid_png())
    try:
        expected = driver.infer(request)
        stop = threading.Event()
        results: list[LoadResult] = []
        worker = threading.Thread(target=lambda: results.append(driver.run(
            request, concurrency=concurrency, stop=stop,
            check=output_check(expected, output_name))), name="stub-kill-load")
        worker.start()
        time.sleep(before_s)
        killed_at = time.monotonic()
        os.kill(pids[0], signal.SIGKILL)
        log.info("killed the stub of %s (pid %d) under load", model, pids[0])
        time.sleep(after_s)
        stop.set()
        worker.join()
        result = results[0]
    finally:
        driver.close()
    window = _window(result, killed_at)
    tail = [r for r in result.records if r.sent_at >= killed_at + window]
    with WireClient(http_url=server.urls.http, grpc_url=server.urls.grpc) as client:
        live = client.http_get("/v2/health/live") == 200
        ready = client.http_get("/v2/health/ready") == 200
    recovered = live and ready and bool(tail) and all(r.ok for r in tail)
    failures = [r for r in result.records if not r.ok]
    return StubKillResult(
        model=model, killed_pid=pids[0], requests=result.sent, failed=result.errors,
        wrong_answers=result.wrong_answers, window_s=round(window, 3), recovered=recovered,
        server_live=live, error_kinds=result.error_kinds(),
        first_error=failures[0].message if failures else "",
        new_stub_pids=tuple(stub_pids(server, model)))
