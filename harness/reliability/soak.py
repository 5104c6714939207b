"""Soak: many requests at fixed concurrency through a pipeline, every answer checked, with
the RSS of the server and each of its stubs sampled from /proc.

Memory is judged after warmup (`warmup_s`, at most a third of the run): the mean RSS of the
first 15 % of the later samples against the mean of the last 15 %, for the sum over all
processes and for each process alone (a small leaking stub barely moves the sum).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from harness.reliability.load_driver import LoadDriver, image_request, output_check
from harness.reliability.payloads import valid_png
from harness.reliability.process_memory import MemorySampler, ProcessGrowth
from harness.reliability.server_processes import server_pids
from tritonkit.server import SERVER_BINARY, LocalTriton

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SoakResult:
    requests: int
    errors: int
    wrong_answers: int
    seconds: float
    throughput_per_s: float
    p99_ms: float
    rss_start_mib: float  # summed over the processes: mean of the first window after warmup
    rss_end_mib: float  # ... and of the last window
    rss_growth_pct: float  # of the sum
    rss_max_process_growth_pct: float  # the largest growth of any one process
    rss_max_process: str  # that process (tritonserver, or triton_python_backend_stub:<model>)
    rss_samples: int  # samples after warmup
    rss_processes: int  # processes sampled (server + stubs), in the last sample
    rss_pids_changed: bool  # a process appeared or vanished after warmup
    rss_by_process: tuple[ProcessGrowth, ...]  # the 5 largest growths, and the server's
    error_kinds: dict[str, int]


def _shown(by_process: tuple[ProcessGrowth, ...], top: int = 5) -> tuple[ProcessGrowth, ...]:
    shown = by_process[:top]
    server = [g for g in by_process[top:] if g.label == SERVER_BINARY]
    return shown + tuple(server)


def soak(server: LocalTriton, *, pipeline: str = "digits", total: int = 100_000,
         concurrency: int = 32, warmup_s: float = 10.0,
         sample_interval_s: float = 0.5) -> SoakResult:
    driver = LoadDriver(server.urls.grpc, timeout_s=60.0)
    request = image_request(pipeline, "IMAGE", valid_png())
    try:
        expected = driver.infer(request)
        with MemorySampler(lambda: server_pids(server), interval_s=sample_interval_s) as sampler:
            result = driver.run(request, concurrency=concurrency, total=total,
                                check=output_check(expected, "PROBABILITIES"))
    finally:
        driver.close()
    trace = sampler.trace()
    warm = min(warmup_s, max(0.0, result.seconds / 3))
    steady = trace.steady(warm)
    width = max(2, int(len(steady) * 0.15))
    by_process = trace.process_growth(warmup_s=warm)
    top = by_process[0] if by_process else None
    soaked = SoakResult(
        requests=result.sent, errors=result.errors, wrong_answers=result.wrong_answers,
        seconds=round(result.seconds, 1), throughput_per_s=round(result.throughput, 1),
        p99_ms=round(result.latency_ms(0.99), 1),
        rss_start_mib=round(sum(s.total_kib for s in steady[:width]) / width / 1024, 1),
        rss_end_mib=round(sum(s.total_kib for s in steady[-width:]) / width / 1024, 1),
        rss_growth_pct=round(trace.growth_pct(warmup_s=warm), 2),
        rss_max_process_growth_pct=round(top.growth_pct, 2) if top else 0.0,
        rss_max_process=top.label if top else "",
        rss_samples=len(steady), rss_processes=steady[-1].processes,
        rss_pids_changed=trace.pids_changed(warmup_s=warm),
        rss_by_process=_shown(by_process), error_kinds=result.error_kinds())
    log.info("soak: %d requests, %d errors, RSS %.1f -> %.1f MiB (%+.2f %%) over %d samples of "
             "%d processes; largest per-process growth %+.2f %% (%s)", soaked.requests,
             soaked.errors, soaked.rss_start_mib, soaked.rss_end_mib, soaked.rss_growth_pct,
             soaked.rss_samples, soaked.rss_processes, soaked.rss_max_process_growth_pct,
             soaked.rss_max_process)
    return soaked
