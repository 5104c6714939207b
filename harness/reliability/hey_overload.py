"""Offer a fixed request rate over HTTP with hey (Debian's /usr/bin/hey) and keep every answer.

hey is closed loop per worker, with a per-worker rate limit (`-q`): a worker sends at most
`q` requests per second, and never more than one at a time. With many workers whose answers
come back faster than 1/q (here: fast rejections) the total is `workers x q` requests per
second, whatever the server does, which is what an overload test needs. A worker whose request
takes longer than 1/q falls behind, so the rate achieved is measured, not assumed: from the
send times hey reports.

All workers of one hey process tick together (their tickers start at the same moment), so
one process sends in bursts of `workers`. The workers are split over several hey processes
started a fraction of a tick apart, which spreads the bursts out.

hey's `-o csv` prints, per answered request, the response time, the HTTP status and the send
offset; requests that got no HTTP answer (refused, reset, timed out) are left out of the CSV.
hey runs with `-n` (a fixed number of requests per worker), so those are counted as the
difference between the requests sent and the rows.
"""

from __future__ import annotations

import logging
import math
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.benchmarks.hey_driver import find_hey, hey_headers
from harness.reliability.errors import ReliabilityError

log = logging.getLogger(__name__)

CSV_HEADER = ("response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,"
              "status-code,offset")
_COLUMNS = CSV_HEADER.split(",")
_TIME, _STATUS, _OFFSET = (_COLUMNS.index(c) for c in ("response-time", "status-code", "offset"))
SLACK_S = 30.0  # beyond the window and one request timeout: start-up, drain, the CSV dump


@dataclass(frozen=True, kw_only=True)
class AnsweredRequest:
    """One CSV row: an HTTP answer."""

    sent_at_s: float  # send time, seconds after the first hey process started
    seconds: float  # response time (hey prints 4 decimals)
    status: int


@dataclass(frozen=True, kw_only=True)
class OpenLoopPlan:
    """`processes` hey processes of `workers // processes` workers each, every worker sending
    `requests_per_worker` requests at most `per_worker_rate` per second."""

    workers: int
    processes: int
    per_worker_rate: float
    requests_per_worker: int
    timeout_s: int  # per request, whole seconds (hey's unit)

    @property
    def sent(self) -> int:
        return self.processes * (self.workers // self.processes) * self.requests_per_worker

    @property
    def target_rate_per_s(self) -> float:
        return self.processes * (self.workers // self.processes) * self.per_worker_rate

    @property
    def window_s(self) -> float:
        return self.requests_per_worker / self.per_worker_rate


def plan_open_loop(rate_per_s: float, duration_s: float, *, workers: int = 512,
                   processes: int = 4, timeout_s: float = 30.0) -> OpenLoopPlan:
    """The plan that offers `rate_per_s` for about `duration_s`."""
    if not (rate_per_s > 0 and duration_s > 0 and math.isfinite(rate_per_s)):
        raise ReliabilityError(f"need a positive rate and duration, got {rate_per_s}/s for "
                               f"{duration_s} s")
    if processes < 1 or workers < processes:
        raise ReliabilityError(f"need workers >= processes >= 1, got {workers} workers in "
                               f"{processes} processes")
    workers = workers // processes * processes
    per_worker = rate_per_s / workers
    return OpenLoopPlan(workers=workers, processes=processes, per_worker_rate=per_worker,
                        requests_per_worker=max(1, round(per_worker * duration_s)),
                        timeout_s=max(1, math.ceil(timeout_s)))


@dataclass(frozen=True, kw_only=True)
class OpenLoopRun:
    plan: OpenLoopPlan
    answered: tuple[AnsweredRequest, ...]
    seconds: float  # wall time of all hey processes

    @property
    def sent(self) -> int:
        return self.plan.sent

    @property
    def unanswered(self) -> int:
        """Requests without an HTTP answer (socket errors, timeouts): not in hey's CSV."""
        return self.sent - len(self.answered)

    @property
    def send_window_s(self) -> float:
        """From the first send to the last one."""
        if len(self.answered) < 2:
            return 0.0
        times = [a.sent_at_s for a in self.answered]
        return max(times) - min(times)

    @property
    def offered_per_s(self) -> float:
        """Requests sent per second of the send window (what the server was offered)."""
        window = self.send_window_s
        return self.sent / window if window > 0 else 0.0


def parse_csv(stdout: str, *, start_offset_s: float = 0.0) -> list[AnsweredRequest]:
    """hey's `-o csv` output; `start_offset_s` is added to each send offset."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines or lines[0] != CSV_HEADER:
        raise ReliabilityError(f"hey -o csv printed no CSV header: {stdout[:300]!r}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split(",")
        if len(fields) != len(_COLUMNS):
            raise ReliabilityError(f"hey CSV line {number} has {len(fields)} fields: {line!r}")
        try:
            rows.append(AnsweredRequest(sent_at_s=float(fields[_OFFSET]) + start_offset_s,
                                        seconds=float(fields[_TIME]),
                                        status=int(fields[_STATUS])))
        except ValueError as e:
            raise ReliabilityError(f"hey CSV line {number}: {line!r}: {e}") from e
    return rows


def hey_csv_command(hey: Path, url: str, body_file: Path, headers: Mapping[str, str], *,
                    workers: int, per_worker_rate: float, requests: int,
                    timeout_s: int) -> list[str]:
    split = hey_headers(headers)
    return [
        str(hey), "-n", str(requests), "-c", str(workers), "-q", f"{per_worker_rate:.6f}",
        "-m", "POST", "-D", str(body_file), "-T", split.content_type,
        "-t", str(timeout_s), "-disable-compression", "-o", "csv",
        *[arg for header in split.others for arg in ("-H", header)],
        url,
    ]


def offer_load(url: str, body: bytes, headers: Mapping[str, str],
               plan: OpenLoopPlan) -> OpenLoopRun:
    """Run `plan` against `url` (POST `body` with `headers`) and collect every answer."""
    hey = find_hey()
    per_process = plan.workers // plan.processes
    stagger_s = 1.0 / plan.per_worker_rate / plan.processes
    log.info("offering %.0f req/s for %.1f s: %d hey processes x %d workers x %.2f req/s, "
             "%d requests", plan.target_rate_per_s, plan.window_s, plan.processes,
             per_process, plan.per_worker_rate, plan.sent)
    with tempfile.TemporaryDirectory(prefix="hey-overload-") as tmp:
        body_file = Path(tmp) / "body.bin"
        body_file.write_bytes(body)
        command = hey_csv_command(hey, url, body_file, headers, workers=per_process,
                                  per_worker_rate=plan.per_worker_rate,
                                  requests=per_process * plan.requests_per_worker,
                                  timeout_s=plan.timeout_s)
        started = time.monotonic()
        running: list[tuple[subprocess.Popen[bytes], float, Path]] = []
        try:
            for index in range(plan.processes):
                time.sleep(max(0.0, started + index * stagger_s - time.monotonic()))
                out = Path(tmp) / f"hey-{index}.csv"
                with out.open("wb") as sink:
                    proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.PIPE)
                running.append((proc, time.monotonic() - started, out))
            limit = started + plan.window_s * 3 + plan.timeout_s + SLACK_S
            answered: list[AnsweredRequest] = []
            for proc, offset_s, out in running:
                try:
                    _, stderr = proc.communicate(timeout=max(1.0, limit - time.monotonic()))
                except subprocess.TimeoutExpired as e:
                    raise ReliabilityError(f"hey did not finish within {limit - started:.0f} s"
                                           f" against {url}") from e
                if proc.returncode != 0:
                    raise ReliabilityError(f"hey exited with {proc.returncode} against {url}: "
                                           f"{stderr.decode(errors='replace')[:1000]}")
                answered += parse_csv(out.read_text(), start_offset_s=offset_s)
        finally:
            for proc, _, _ in running:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    run = OpenLoopRun(plan=plan, answered=tuple(sorted(answered, key=lambda a: a.sent_at_s)),
                      seconds=time.monotonic() - started)
    log.info("hey sent %d requests in %.1f s (%.0f req/s offered), %d answered",
             run.sent, run.send_window_s, run.offered_per_s, len(run.answered))
    return run
