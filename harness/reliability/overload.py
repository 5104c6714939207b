"""Overload: measure saturation over HTTP with hey (closed loop), then offer about `factor` x
that rate with hey (rate-limited workers, `harness.reliability.hey_overload`) and account for every
request.

Excess requests must be rejected explicitly and fast by the bounded queues
(`dynamic_batching.default_queue_policy.max_queue_size` of each step): Triton answers HTTP 503
(gRPC UNAVAILABLE) "in ensemble '<name>', ... Exceeds maximum queue size", which the typed
clients map to a transient ResourceExhaustedError and retry with exponential backoff.
Accepted requests must keep a bounded latency.

hey records the status of each answer but not its body, so a probe thread sends the same
request every 20 ms during the overload with http.client and records each status with its
message; every non-200 status hey saw is named by the message(s) the probe saw with it.
Requests without an HTTP answer are counted too (`NO_ANSWER`). The server's side comes from
its metrics: failures by model and reason (Triton 2.51 counts each rejected ensemble request
twice, under the ensemble, reason OTHER) and the mean time accepted requests spent in each
step and its queue (`server_times`), which separates queueing from a CPU-starved client.

Offered rate: a hey worker never has more than one request outstanding, so the rate reached
is about workers / mean latency; it is reported as measured (`offered_factor`), not as asked.
By default the server and its stubs run on one half of the CPUs and hey on the other
(`split_cpus`, `harness.reliability.cpu_split`): sharing two cores, hey took the server's CPU and
reached 1.1 to 2x with 512 workers. 1024 workers in 8 hey processes started a fraction of a
tick apart (one process's workers tick together and would arrive in bursts) reached 2.2 to
2.4x on a 2-core machine. More workers did not help: under overload Triton 2.51's HTTP
frontend leaves some requests unanswered (0.01 to 1.3 % of them; at shutdown it then waits on
exactly that many open "HTTP service connections"), with and without queue limits. Measured
here: CPUs shared, in 2 of 12 runs with 512 connections and in all 7 with 768 to 2048; CPUs
split, in none of 4 runs with 768 to 1024 and in 6 of 10 with 1536 to 4096. Each such request
holds its hey worker until `timeout_s` and is counted as `NO_ANSWER`.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np
from tritonkit_client.kserve_codec import encode_request, request_headers

from harness.benchmarks.hey_driver import run_hey
from harness.reliability.cpu_split import CpuSplit, halve_cpus, pinned_caller, pinned_processes
from harness.reliability.cpu_usage import CpuMeter, CpuShares
from harness.reliability.hey_overload import OpenLoopRun, offer_load, plan_open_loop
from harness.reliability.payloads import valid_png
from harness.reliability.server_metrics import ModelTimes, failure_delta, model_times, read_counters
from harness.reliability.server_processes import server_pids
from tritonkit.server import LocalTriton

log = logging.getLogger(__name__)

QUEUE_FULL_TEXT = "exceeds maximum queue size"
NO_ANSWER = "no HTTP answer (socket error or timeout; hey's CSV does not say which)"
_MESSAGE_CHARS = 100


@dataclass(frozen=True, kw_only=True)
class OverloadResult:
    saturation_per_s: float  # hey closed loop at `saturation_concurrency`, HTTP
    saturation_p99_ms: float
    saturation_errors: int  # must be 0: the queue bound must not reject at normal load
    target_per_s: float  # factor x saturation
    offered_per_s: float  # achieved: requests sent per second of the send window
    offered_factor: float  # offered_per_s / saturation_per_s
    workers: int
    seconds: float  # the send window
    requests: int
    accepted: int  # HTTP 200
    accepted_per_s: float  # goodput under overload
    rejections: int  # explicit queue-full rejections
    other_errors: int  # every other failure; each kind is in error_kinds
    error_kinds: dict[str, int]  # "HTTP <status>: <message>" (or NO_ANSWER) -> count
    p50_ms_accepted: float
    p99_ms_accepted: float
    max_ms_accepted: float
    p50_ms_rejected: float
    p99_ms_rejected: float
    probe_kinds: dict[str, int]  # the probe's own answers: "HTTP <status>: <message>" -> count
    server_failures: dict[str, int]  # Triton's failure counters' growth: "<model>/<reason>"
    server_times: tuple[ModelTimes, ...]  # Triton's mean durations of the accepted requests
    cpu_split: str  # how server and load generator shared the CPUs
    saturation_cpu: CpuShares | None  # where the CPU went while saturating
    overload_cpu: CpuShares | None  # ... and while overloading


def _message(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace")
    try:
        decoded = json.loads(text)
        if isinstance(decoded, dict) and isinstance(decoded.get("error"), str):
            text = decoded["error"]
    except ValueError:
        pass
    return " ".join(text.split())[:_MESSAGE_CHARS]


def _kind(status: int, message: str) -> str:
    return f"HTTP {status}: {message}"


class MessageProbe:
    """Sends `body` every `interval_s` on one keep-alive connection and counts each
    (status, message) it gets back, until stopped."""

    def __init__(self, url: str, body: bytes, headers: Mapping[str, str], *,
                 interval_s: float = 0.02, timeout_s: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._path = parts.path
        self._body = body
        self._headers = dict(headers)
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._stop = threading.Event()
        self.answers: Counter[tuple[int, str]] = Counter()
        self.failures: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._loop, name="overload-probe", daemon=True)

    def __enter__(self) -> MessageProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        try:
            while not self._stop.wait(self._interval_s):
                try:
                    connection.request("POST", self._path, body=self._body,
                                       headers=self._headers)
                    response = connection.getresponse()
                    body = response.read()
                except (OSError, http.client.HTTPException) as e:
                    self.failures[f"{type(e).__name__}: {e}"[:_MESSAGE_CHARS]] += 1
                    connection.close()
                    continue
                status = response.status
                self.answers[(status, "" if status == 200 else _message(body))] += 1
        finally:
            connection.close()

    def kinds(self) -> dict[str, int]:
        kinds = {_kind(s, m): n for (s, m), n in self.answers.items() if s != 200}
        kinds.update({f"probe error: {m}": n for m, n in self.failures.items()})
        return kinds

    def messages_of(self, status: int) -> list[str]:
        return sorted(m for (s, m) in self.answers if s == status)


def _ms(values: Sequence[float], quantile: float) -> float:
    return round(float(np.quantile(values, quantile)) * 1000, 1) if values else 0.0


def classify(run: OpenLoopRun, probe: MessageProbe) -> tuple[dict[str, int], set[int]]:
    """Every non-200 answer hey got, by status and the message(s) the probe saw with that
    status; and the statuses that mean "queue full" (every message seen with them says so)."""
    statuses = Counter(a.status for a in run.answered if a.status != 200)
    kinds: dict[str, int] = {}
    queue_full: set[int] = set()
    for status, count in sorted(statuses.items()):
        messages = probe.messages_of(status)
        if messages and all(QUEUE_FULL_TEXT in m.lower() for m in messages):
            queue_full.add(status)
        named = " | ".join(messages) if messages else "(the probe saw no answer with it)"
        kinds[_kind(status, named)] = count
    if run.unanswered:
        kinds[NO_ANSWER] = run.unanswered
    return kinds, queue_full


@contextmanager
def _separated(server: LocalTriton, split: CpuSplit | None) -> Iterator[None]:
    with ExitStack() as stack:
        if split is not None:
            stack.enter_context(pinned_processes(server_pids(server), split.server))
            stack.enter_context(pinned_caller(split.generator))
        yield


def overload(server: LocalTriton, *, pipeline: str = "digits", factor: float = 4.0,
             saturation_s: float = 4.0, overload_s: float = 8.0, workers: int = 1024,
             hey_processes: int = 8, saturation_concurrency: int = 64,
             timeout_s: float = 10.0, split_cpus: bool = True) -> OverloadResult:
    """Saturation of `pipeline` (one valid image per request), then `factor` x that rate.

    With `split_cpus` (and at least two CPUs) both phases run with the server and its stubs
    pinned to the upper half of the CPUs and hey to the lower half
    (`harness.reliability.cpu_split`),
    so saturation is that of the server on its half, and the generator does not take the
    server's CPU; the pinning is undone afterwards.
    """
    split = halve_cpus() if split_cpus else None
    with _separated(server, split):
        return _overload(server, pipeline=pipeline, factor=factor, saturation_s=saturation_s,
                         overload_s=overload_s, workers=workers, hey_processes=hey_processes,
                         saturation_concurrency=saturation_concurrency, timeout_s=timeout_s,
                         cpu_split=split.describe() if split else "shared")


def _overload(server: LocalTriton, *, pipeline: str, factor: float, saturation_s: float,
              overload_s: float, workers: int, hey_processes: int,
              saturation_concurrency: int, timeout_s: float, cpu_split: str) -> OverloadResult:
    urls = server.urls
    body, header_length = encode_request(
        {"IMAGE": np.array([[valid_png()]], dtype=np.object_)}, [])
    headers = request_headers(header_length)
    url = f"{urls.http}/v2/models/{pipeline}/infer"
    run_hey(url, body, headers, concurrency=saturation_concurrency, duration_s=1.0,
            timeout_s=timeout_s)  # warm-up: connections, caches
    with CpuMeter(lambda: server_pids(server)) as saturation_cpu:
        saturated = run_hey(url, body, headers, concurrency=saturation_concurrency,
                            duration_s=saturation_s, timeout_s=timeout_s, system="saturation")
    plan = plan_open_loop(saturated.throughput_rps * factor, overload_s, workers=workers,
                          processes=hey_processes, timeout_s=timeout_s)
    before = read_counters(urls.metrics)
    with CpuMeter(lambda: server_pids(server)) as overload_cpu, \
            MessageProbe(url, body, headers, timeout_s=timeout_s) as probe:
        run = offer_load(url, body, headers, plan)
    after = read_counters(urls.metrics)
    kinds, queue_full = classify(run, probe)
    accepted = [a.seconds for a in run.answered if a.status == 200]
    rejected = [a.seconds for a in run.answered if a.status in queue_full]
    window = run.send_window_s
    result = OverloadResult(
        saturation_per_s=round(saturated.throughput_rps, 1),
        saturation_p99_ms=saturated.p99_ms, saturation_errors=saturated.errors,
        target_per_s=round(plan.target_rate_per_s, 1),
        offered_per_s=round(run.offered_per_s, 1),
        offered_factor=round(run.offered_per_s / saturated.throughput_rps, 2),
        workers=plan.workers, seconds=round(window, 2), requests=run.sent,
        accepted=len(accepted),
        accepted_per_s=round(len(accepted) / window, 1) if window > 0 else 0.0,
        rejections=len(rejected), other_errors=run.sent - len(accepted) - len(rejected),
        error_kinds=kinds,
        p50_ms_accepted=_ms(accepted, 0.5), p99_ms_accepted=_ms(accepted, 0.99),
        max_ms_accepted=round(max(accepted, default=0.0) * 1000, 1),
        p50_ms_rejected=_ms(rejected, 0.5), p99_ms_rejected=_ms(rejected, 0.99),
        probe_kinds=probe.kinds(), server_failures=failure_delta(before, after),
        server_times=model_times(before, after),
        cpu_split=cpu_split, saturation_cpu=saturation_cpu.shares,
        overload_cpu=overload_cpu.shares)
    log.info("overload (%s): saturation %.0f req/s, offered %.0f req/s (%.2fx), %d requests: %d "
             "accepted (p99 %.1f ms), %d rejected (p99 %.1f ms), %d other %s",
             cpu_split, result.saturation_per_s, result.offered_per_s, result.offered_factor,
             result.requests, result.accepted, result.p99_ms_accepted, result.rejections,
             result.p99_ms_rejected, result.other_errors, kinds)
    return result
