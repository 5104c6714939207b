"""Overload: measure saturation (closed loop), then offer about 4x that rate (open loop).

Excess requests must be rejected explicitly and fast by the bounded queue (Triton answers
UNAVAILABLE "exceeds maximum queue size", which the clients map to a transient
ResourceExhaustedError and retry with exponential backoff), and accepted requests must keep
a bounded latency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reliability.load_driver import LoadDriver, image_request
from reliability.payloads import valid_png

QUEUE_FULL_TEXT = "exceeds maximum queue size"


@dataclass(frozen=True, kw_only=True)
class OverloadResult:
    saturation_per_s: float
    offered_per_s: float
    requests: int
    accepted: int
    rejections: int  # explicit queue-full rejections
    other_errors: int
    p99_ms_accepted: float
    p50_ms_accepted: float
    p99_ms_rejected: float


def overload(grpc_url: str, *, pipeline: str = "digits", factor: float = 4.0,
             saturation_s: float = 4.0, overload_s: float = 8.0) -> OverloadResult:
    driver = LoadDriver(grpc_url, timeout_s=60.0)
    request = image_request(pipeline, "IMAGE", valid_png())
    try:
        saturated = driver.run(request, concurrency=64, duration_s=saturation_s)
        rate = saturated.throughput * factor
        result = driver.run(request, concurrency=0, duration_s=overload_s, rate_per_s=rate,
                            max_in_flight=20_000)
    finally:
        driver.close()
    rejected = [r for r in result.records if not r.ok and QUEUE_FULL_TEXT in r.message]
    others = result.errors - len(rejected)
    rejected_ms = [r.seconds * 1000 for r in rejected]
    return OverloadResult(
        saturation_per_s=round(saturated.throughput, 1),
        offered_per_s=round(result.sent / overload_s, 1), requests=result.sent,
        accepted=result.succeeded, rejections=len(rejected), other_errors=others,
        p99_ms_accepted=round(result.latency_ms(0.99), 1),
        p50_ms_accepted=round(result.latency_ms(0.5), 1),
        p99_ms_rejected=round(float(np.quantile(rejected_ms, 0.99)), 1) if rejected_ms else 0.0)
