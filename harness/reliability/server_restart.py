"""Restart the server under clients that retry: no request may be lost silently.

A real local Triton serves the digits pipeline (explicit model control, only the models
named loaded, so a restart takes seconds). `concurrency` threads each drive the project's
typed client (`tritonkit_client.TritonClient`, its `RetryPolicy`: transient failures such as
UNAVAILABLE or a refused connection are retried with exponential backoff) with images of the
digits test split, and check every answer against the answer the same server gave before the
fault. Mid-load the server is stopped (SIGTERM, Triton's graceful stop; or SIGKILL) and a new
one is started on the SAME ports, so the clients reconnect without being told.

Every request is accounted for in a ledger: it is issued before the call and recorded when
the call returns or raises. It ends as a correct answer, a wrong answer, an explicit
`ClientError` raised after the retries gave up, or (a client bug) an exception that escaped
the client's error translation. `lost` counts requests issued but never recorded.

Retries are counted from the warnings `tritonkit_client.options` logs before each retry (the typed
client has no retry counter or hook), per thread.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np
from tritonkit_client import (
    Classification,
    ClientError,
    ClientOptions,
    Protocol,
    RetryPolicy,
    TritonClient,
    classify,
    parse_url,
)

from harness.reliability.errors import ReliabilityError
from tritonkit.server import LocalTriton, is_port_free

log = logging.getLogger(__name__)

#: The logger whose warnings announce a retry ("... (retry n/N in d s)"), see `RetryCounter`.
RETRY_LOGGER = "tritonkit_client.options"
_SCORE_TOLERANCE = 1e-5
_RETRY_SUFFIX = re.compile(r" \(retry \d+/\d+ in [\d.]+s\)$")


class StopMode(str, Enum):
    """How the first server is stopped."""

    SIGTERM = "SIGTERM"  # Triton's graceful stop: in-flight requests finish, models unload
    SIGKILL = "SIGKILL"  # a crash: connections reset, nothing finishes


class Outcome(str, Enum):
    """How one request ended."""

    CORRECT = "correct"
    WRONG_ANSWER = "wrong_answer"
    EXPLICIT_ERROR = "explicit_error"  # a ClientError raised to the caller after the retries
    UNTRANSLATED_ERROR = "untranslated_error"  # not a ClientError: the client failed to translate


@dataclass(frozen=True, kw_only=True)
class MessageCount:
    """One distinct error message and how often it was seen."""

    message: str
    count: int


def distinct_messages(messages: Iterable[str], *, limit: int = 5,
                      width: int = 300) -> tuple[MessageCount, ...]:
    """The `limit` most frequent distinct messages (cut to `width` characters), most first."""
    counts = Counter(m[:width] for m in messages)
    return tuple(MessageCount(message=m, count=n) for m, n in counts.most_common(limit))


@dataclass(frozen=True, kw_only=True)
class RequestRecord:
    """One request as its caller saw it. Times are `time.monotonic()`."""

    worker: int
    protocol: Protocol
    started_at: float
    ended_at: float
    outcome: Outcome
    retries: int  # retries made by the client's RetryPolicy within this request
    error_type: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.CORRECT


@dataclass(frozen=True, kw_only=True)
class RestartTimeline:
    """When the fault happened. Times are `time.monotonic()`."""

    signal_at: float  # the stop signal was sent
    stopped_at: float  # the first server and all its processes were gone
    ports_free_at: float  # the ports could be bound again
    ready_at: float  # the new server was ready (strict readiness: its models too)


@dataclass(frozen=True, kw_only=True)
class ClientSettings:
    """The typed client each load thread uses; the retry budget should outlast the outage."""

    protocols: tuple[Protocol, ...] = (Protocol.GRPC, Protocol.HTTP)  # assigned round-robin
    timeout_s: float = 20.0
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(retries=12, backoff_s=0.2, max_backoff_s=3.0))

    def __post_init__(self) -> None:
        if not self.protocols:
            raise ReliabilityError("ClientSettings.protocols must name at least one protocol")

    def worst_case_request_s(self) -> float:
        """How long one request can take at most: every attempt times out, full backoffs."""
        backoffs = sum(self.retry.nominal_delay_s(i) for i in range(self.retry.retries))
        return self.timeout_s * self.retry.attempts + backoffs


@dataclass(frozen=True, kw_only=True)
class RestartResult:
    mode: StopMode
    concurrency: int
    protocols: tuple[str, ...]
    requests: int  # issued
    succeeded: int  # correct answers
    retried: int  # requests that needed at least one retry (whatever their end)
    retries: int  # retries made in all
    explicit_failures: int  # ClientErrors raised after the retries gave up
    untranslated_errors: int  # exceptions that are not ClientErrors (a client bug)
    lost: int  # issued but never answered nor failed (must be 0)
    wrong_answers: int  # must be 0
    in_flight_at_stop: int  # requests under way when the stop signal was sent
    served_during_stop: int  # correct answers that arrived between the signal and the exit
    outage_s: float  # stop signal -> new server ready
    stop_s: float  # stop signal -> first server gone
    port_wait_s: float  # first server gone -> its ports free to bind again
    start_s: float  # ports free -> new server ready
    client_gap_s: float  # longest time without a correct answer, from the signal on
    first_success_after_restart_s: float | None  # new server ready -> first correct answer
    failures_by_type: dict[str, int]
    failure_messages: tuple[MessageCount, ...]
    retry_messages: tuple[MessageCount, ...]  # the failures that were retried
    retry_policy: str
    server_logs: tuple[str, ...]

    @property
    def accounted(self) -> bool:
        """Every request ended as a correct answer or an explicit error; none was wrong."""
        return self.lost == 0 and self.wrong_answers == 0 and self.untranslated_errors == 0


# --------------------------------------------------------------------------- bookkeeping


class RetryCounter(logging.Handler):
    """Counts, per thread, the retries `tritonkit_client.options.call_with_retry` announces.

    Attach it with `with RetryCounter() as counter:`; `counter.count()` is the number of retries
    the calling thread's client made so far.
    """

    def __init__(self, logger_name: str = RETRY_LOGGER) -> None:
        super().__init__(level=logging.WARNING)
        self._logger = logging.getLogger(logger_name)
        self._counts: Counter[int] = Counter()
        self._messages: list[str] = []
        self._lock_counts = threading.Lock()
        self._saved_level: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread is None:
            return
        message = record.getMessage()
        with self._lock_counts:
            self._counts[record.thread] += 1
            self._messages.append(message)

    def count(self, thread: int | None = None) -> int:
        ident = threading.get_ident() if thread is None else thread
        with self._lock_counts:
            return self._counts[ident]

    def total(self) -> int:
        with self._lock_counts:
            return sum(self._counts.values())

    def messages(self) -> tuple[str, ...]:
        """What each retried failure said, in order."""
        with self._lock_counts:
            return tuple(self._messages)

    def __enter__(self) -> RetryCounter:
        if not self._logger.isEnabledFor(logging.WARNING):
            self._saved_level = self._logger.level
            self._logger.setLevel(logging.WARNING)
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        if self._saved_level is not None:
            self._logger.setLevel(self._saved_level)
            self._saved_level = None


class Ledger:
    """Issued requests and their records; `unrecorded()` is what was lost."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._issued = 0
        self._open: set[int] = set()
        self._records: list[RequestRecord] = []

    def issue(self) -> int:
        with self._lock:
            ticket = self._issued
            self._issued += 1
            self._open.add(ticket)
            return ticket

    def record(self, ticket: int, record: RequestRecord) -> None:
        with self._lock:
            if ticket not in self._open:
                raise ReliabilityError(f"request {ticket} was recorded twice or never issued")
            self._open.remove(ticket)
            self._records.append(record)

    @property
    def issued(self) -> int:
        with self._lock:
            return self._issued

    def in_flight(self) -> int:
        with self._lock:
            return len(self._open)

    def records(self) -> tuple[RequestRecord, ...]:
        with self._lock:
            return tuple(self._records)

    def unrecorded(self) -> int:
        with self._lock:
            return len(self._open)


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True, kw_only=True)
class ExpectedAnswer:
    """The pipeline's answer for one image before the fault: class indices and scores."""

    indices: tuple[int, ...]
    scores: tuple[float, ...]

    @classmethod
    def of(cls, answer: Sequence[Classification]) -> ExpectedAnswer:
        return cls(indices=tuple(c.index for c in answer), scores=tuple(c.score for c in answer))

    def matches(self, answer: Sequence[Classification]) -> bool:
        got = ExpectedAnswer.of(answer)
        return got.indices == self.indices and bool(
            np.allclose(got.scores, self.scores, rtol=0.0, atol=_SCORE_TOLERANCE))


def digits_images(count: int) -> list[bytes]:
    """`count` PNG images of the digits test split (cycled when the split is smaller)."""
    from examples.model_zoo.digits import encoded_split  # noqa: PLC0415 (scikit-learn import is slow)

    blobs, _ = encoded_split("test")
    return [blobs[i % len(blobs)] for i in range(count)]


def _open_client(url: str, settings: ClientSettings) -> TritonClient:
    return TritonClient(parse_url(url), ClientOptions(timeout_s=settings.timeout_s,
                                                      retry=settings.retry))


def reference_answers(url: str, pipeline: str, images: Sequence[bytes],
                      settings: ClientSettings) -> list[ExpectedAnswer]:
    """The answer the healthy server gives for each image (the 'expected answer' later)."""
    with _open_client(url, settings) as client:
        return [ExpectedAnswer.of(classify(client, pipeline, [image])[0]) for image in images]


# --------------------------------------------------------------------------- load threads


@dataclass(frozen=True, kw_only=True)
class _Work:
    pipeline: str
    images: Sequence[bytes]
    expected: Sequence[ExpectedAnswer]
    settings: ClientSettings
    ledger: Ledger
    retries: RetryCounter
    stop: threading.Event
    on_success: Callable[[], None]


def _drive(worker: int, url: str, protocol: Protocol, work: _Work) -> None:
    """Send one request after another until `work.stop`; record each one in the ledger."""
    thread = threading.get_ident()
    with _open_client(url, work.settings) as client:
        n = worker
        while not work.stop.is_set():
            image = n % len(work.images)
            n += 1
            ticket = work.ledger.issue()
            before = work.retries.count(thread)
            started = time.monotonic()
            outcome, error_type, message = Outcome.CORRECT, "", ""
            try:
                answer = classify(client, work.pipeline, [work.images[image]])[0]
                if not work.expected[image].matches(answer):
                    outcome = Outcome.WRONG_ANSWER
                    message = f"image {image}: got {ExpectedAnswer.of(answer)}"
            except ClientError as e:
                outcome, error_type, message = Outcome.EXPLICIT_ERROR, type(e).__name__, str(e)
            except Exception as e:  # recorded, not swallowed: an error the client left untranslated
                outcome, error_type, message = (Outcome.UNTRANSLATED_ERROR, type(e).__name__,
                                                str(e))
            work.ledger.record(ticket, RequestRecord(
                worker=worker, protocol=protocol, started_at=started, ended_at=time.monotonic(),
                outcome=outcome, retries=work.retries.count(thread) - before,
                error_type=error_type, message=message[:300]))
            if outcome is Outcome.CORRECT:
                work.on_success()


# --------------------------------------------------------------------------- the scenario


def _wait_ports_free(ports: Sequence[int], *, timeout_s: float) -> None:
    """Wait until `LocalTriton` accepts the ports again.

    Connections the old server closed first linger in TIME_WAIT (up to 60 s on Linux); the
    server binds with SO_REUSEADDR and would not mind, but `ports.is_port_free` (which
    `LocalTriton.start` checks requested ports with) binds without it and reports them taken.
    """
    deadline = time.monotonic() + timeout_s
    while not all(is_port_free(p) for p in ports):
        if time.monotonic() > deadline:
            taken = [p for p in ports if not is_port_free(p)]
            raise ReliabilityError(f"ports {taken} were still taken {timeout_s:.0f} s after "
                                   "the server stopped")
        time.sleep(0.2)


def _ports(server: LocalTriton) -> tuple[int, int, int]:
    """(HTTP, gRPC, metrics) ports of a running server."""
    urls = server.urls
    return (parse_url(urls.http).port, parse_url(urls.grpc).port,
            parse_url(urls.metrics).port)


def _server(repository: Path, log_path: Path, models: Sequence[str], *,
            startup_timeout_s: float, exit_timeout_s: int,
            ports: tuple[int, int, int] | None = None) -> LocalTriton:
    http, grpc, metrics = ports if ports is not None else (None, None, None)
    return LocalTriton(repository, log_path=log_path, model_control="explicit",
                       load_models=list(models), startup_timeout_s=startup_timeout_s,
                       stop_timeout_s=exit_timeout_s + 15.0,
                       extra_args=[f"--exit-timeout-secs={exit_timeout_s}"],
                       http_port=http, grpc_port=grpc, metrics_port=metrics)


class _SuccessClock:
    """When the last correct answer arrived; lets the scenario wait for one."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._last = float("-inf")

    def mark(self) -> None:
        with self._changed:
            self._last = time.monotonic()
            self._changed.notify_all()

    def wait_after(self, since: float, *, timeout_s: float) -> bool:
        """Wait until a correct answer arrived after `since`; False after `timeout_s`."""
        with self._changed:
            return self._changed.wait_for(lambda: self._last >= since, timeout=timeout_s)


def summarize(
    *, mode: StopMode, concurrency: int, settings: ClientSettings,
    records: Sequence[RequestRecord], issued: int, in_flight_at_stop: int,
    timeline: RestartTimeline, retry_messages: Iterable[str] = (),
    server_logs: Sequence[Path] = (),
) -> RestartResult:
    """The result of one run from its ledger and timeline (pure: no server needed)."""
    by_outcome = Counter(r.outcome for r in records)
    failures = [r for r in records if r.outcome in (Outcome.EXPLICIT_ERROR,
                                                     Outcome.UNTRANSLATED_ERROR)]
    correct_ends = sorted(r.ended_at for r in records if r.ok)
    after_ready = [t for t in correct_ends if t >= timeline.ready_at]
    # the longest stretch without a correct answer, from the last one before the signal on
    last_before = [t for t in correct_ends if t < timeline.signal_at][-1:]
    around = last_before + [t for t in correct_ends if t >= timeline.signal_at]
    gap = max((b - a for a, b in itertools.pairwise(around)), default=float("nan"))
    policy = settings.retry
    return RestartResult(
        mode=mode, concurrency=concurrency,
        protocols=tuple(p.value for p in settings.protocols),
        requests=issued, succeeded=by_outcome[Outcome.CORRECT],
        retried=sum(r.retries > 0 for r in records), retries=sum(r.retries for r in records),
        explicit_failures=by_outcome[Outcome.EXPLICIT_ERROR],
        untranslated_errors=by_outcome[Outcome.UNTRANSLATED_ERROR],
        lost=issued - len(records), wrong_answers=by_outcome[Outcome.WRONG_ANSWER],
        in_flight_at_stop=in_flight_at_stop,
        served_during_stop=sum(timeline.signal_at <= t < timeline.stopped_at
                               for t in correct_ends),
        outage_s=round(timeline.ready_at - timeline.signal_at, 3),
        stop_s=round(timeline.stopped_at - timeline.signal_at, 3),
        port_wait_s=round(timeline.ports_free_at - timeline.stopped_at, 3),
        start_s=round(timeline.ready_at - timeline.ports_free_at, 3),
        client_gap_s=round(gap, 3),
        first_success_after_restart_s=(round(after_ready[0] - timeline.ready_at, 3)
                                       if after_ready else None),
        failures_by_type=dict(Counter(f"{r.protocol.value}:{r.error_type}" for r in failures)),
        failure_messages=distinct_messages(r.message for r in failures),
        retry_messages=distinct_messages(_RETRY_SUFFIX.sub("", m) for m in retry_messages),
        retry_policy=(f"{policy.retries} retries, backoff {policy.backoff_s}s x"
                      f"{policy.multiplier} up to {policy.max_backoff_s}s, "
                      f"jitter {policy.jitter}; timeout {settings.timeout_s}s"),
        server_logs=tuple(str(p) for p in server_logs),
    )


def restart_under_load(
    repository: Path, *, log_dir: Path, concurrency: int = 4, before_s: float = 3.0,
    after_s: float = 5.0, kill: bool = False, pipeline: str = "digits",
    models: Sequence[str] = ("digits",), images: int = 64,
    settings: ClientSettings | None = None, startup_timeout_s: float = 240.0,
    exit_timeout_s: int = 30, port_wait_timeout_s: float = 90.0,
) -> RestartResult:
    """Stop the server under `concurrency` retrying clients and start it again on its ports.

    `repository` is a built local repository; the servers run with explicit model control
    and load `models` (the pipeline's steps come with it). `before_s` of load precede the
    stop; after the new server is ready the load goes on for `after_s`. `kill` stops the
    first server with SIGKILL instead of SIGTERM. `exit_timeout_s` is Triton's
    `--exit-timeout-secs`: on SIGTERM Triton keeps serving until its HTTP clients close their
    (keep-alive) connections and in-flight requests finish, at most that long. Must be called
    from a thread that outlives the servers (the main thread, normally: see `LocalTriton`).
    """
    settings = settings or ClientSettings()
    mode = StopMode.SIGKILL if kill else StopMode.SIGTERM
    log_dir.mkdir(parents=True, exist_ok=True)
    logs = (log_dir / f"restart-{mode.value.lower()}-first.log",
            log_dir / f"restart-{mode.value.lower()}-second.log")
    first = _server(repository, logs[0], models, startup_timeout_s=startup_timeout_s,
                    exit_timeout_s=exit_timeout_s)
    second: LocalTriton | None = None
    stop = threading.Event()
    ledger = Ledger()
    threads: list[threading.Thread] = []
    successes = _SuccessClock()
    try:
        first.start()
        urls = {Protocol.GRPC: first.urls.grpc, Protocol.HTTP: first.urls.http}
        ports = _ports(first)
        blobs = digits_images(images)
        expected = reference_answers(urls[Protocol.GRPC], pipeline, blobs, settings)
        with RetryCounter() as retries:
            work = _Work(pipeline=pipeline, images=blobs, expected=expected,
                         settings=settings, ledger=ledger, retries=retries, stop=stop,
                         on_success=successes.mark)
            for worker in range(concurrency):
                protocol = settings.protocols[worker % len(settings.protocols)]
                threads.append(threading.Thread(
                    target=_drive, args=(worker, urls[protocol], protocol, work),
                    name=f"restart-load-{worker}", daemon=True))
            started = time.monotonic()
            for thread in threads:
                thread.start()
            if not successes.wait_after(started, timeout_s=settings.worst_case_request_s()):
                raise ReliabilityError("no correct answer before the fault; see " + str(logs[0]))
            time.sleep(before_s)
            signal_at = time.monotonic()
            in_flight = ledger.in_flight()
            if kill:
                if first.pid is None or not first.is_running():
                    raise ReliabilityError("the first server is not running; cannot kill it")
                os.kill(first.pid, signal.SIGKILL)
                log.info("SIGKILL sent to tritonserver (pid %s) under load", first.pid)
            else:
                log.info("stopping tritonserver (pid %s, SIGTERM) under load", first.pid)
            first.stop()  # SIGTERM and wait; after SIGKILL: clears the stubs of its group
            stopped_at = time.monotonic()
            _wait_ports_free(ports, timeout_s=port_wait_timeout_s)
            ports_free_at = time.monotonic()
            second = _server(repository, logs[1], models, startup_timeout_s=startup_timeout_s,
                             exit_timeout_s=exit_timeout_s, ports=ports)
            second.start()
            ready_at = time.monotonic()
            log.info("restarted on the same ports: stop %.1f s, port wait %.1f s, start %.1f s",
                     stopped_at - signal_at, ports_free_at - stopped_at, ready_at - ports_free_at)
            time.sleep(after_s)
            if not successes.wait_after(ready_at, timeout_s=settings.worst_case_request_s()):
                log.warning("no correct answer after the restart")
            stop.set()
            _join(threads, timeout_s=settings.worst_case_request_s() + 5.0)
            retried = retries.messages()
    finally:
        stop.set()
        _join(threads, timeout_s=settings.worst_case_request_s() + 5.0)
        for server in (first, second):
            if server is not None:
                server.stop()
    timeline = RestartTimeline(signal_at=signal_at, stopped_at=stopped_at,
                               ports_free_at=ports_free_at, ready_at=ready_at)
    return summarize(mode=mode, concurrency=concurrency, settings=settings,
                     records=ledger.records(), issued=ledger.issued,
                     in_flight_at_stop=in_flight, timeline=timeline, retry_messages=retried,
                     server_logs=logs)


def _join(threads: Sequence[threading.Thread], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        log.warning("load threads still running after %.0f s: %s (their requests count as "
                    "lost)", timeout_s, stuck)
