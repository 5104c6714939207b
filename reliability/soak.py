"""Soak: many requests at fixed concurrency through a pipeline, every answer checked, with
the RSS of the server and its stubs sampled from /proc."""

from __future__ import annotations

from dataclasses import dataclass

from build_scripts.local_server.local_triton import LocalTriton
from reliability.load_driver import LoadDriver, image_request, output_check
from reliability.payloads import valid_png
from reliability.process_memory import MemorySampler
from reliability.server_processes import server_pids


@dataclass(frozen=True, kw_only=True)
class SoakResult:
    requests: int
    errors: int
    wrong_answers: int
    seconds: float
    throughput_per_s: float
    p99_ms: float
    rss_start_mib: float
    rss_end_mib: float
    rss_growth_pct: float
    error_kinds: dict[str, int]


def soak(server: LocalTriton, *, pipeline: str = "digits", total: int = 100_000,
         concurrency: int = 32, warmup_s: float = 10.0) -> SoakResult:
    driver = LoadDriver(server.urls.grpc, timeout_s=60.0)
    request = image_request(pipeline, "IMAGE", valid_png())
    try:
        expected = driver.infer(request)
        with MemorySampler(lambda: server_pids(server), interval_s=0.5) as sampler:
            result = driver.run(request, concurrency=concurrency, total=total,
                                check=output_check(expected, "CLASS_INDICES"))
    finally:
        driver.close()
    trace = sampler.trace()
    steady = [s.total_kib for s in trace.samples if s.at_s >= warmup_s] or [0]
    warm = min(warmup_s, max(0.0, result.seconds / 3))
    return SoakResult(
        requests=result.sent, errors=result.errors, wrong_answers=result.wrong_answers,
        seconds=round(result.seconds, 1), throughput_per_s=round(result.throughput, 1),
        p99_ms=round(result.latency_ms(0.99), 1), rss_start_mib=round(steady[0] / 1024, 1),
        rss_end_mib=round(steady[-1] / 1024, 1),
        rss_growth_pct=round(trace.growth_pct(warmup_s=warm), 2),
        error_kinds=result.error_kinds())
