from __future__ import annotations

from harness.reliability.server_metrics import (
    Counter,
    ModelTimes,
    failure_delta,
    model_times,
    parse_counters,
)

_BEFORE = """# HELP nv_inference_request_failure ...
nv_inference_request_failure{model="digits_preprocess",reason="REJECTED",version="1"} 5
nv_inference_request_failure{model="digits",reason="OTHER",version="1"} 0
nv_inference_request_success{model="digits",version="1"} 100
nv_inference_request_duration_us{model="digits",version="1"} 1000000
nv_inference_queue_duration_us{model="digits",version="1"} 10000
nv_inference_count{model="digits",version="1"} 100
"""
_AFTER = """nv_inference_request_failure{model="digits_preprocess",reason="REJECTED",version="1"} 9
nv_inference_request_failure{model="digits",reason="OTHER",version="1"} 0
nv_inference_request_failure{model="digits",reason="BACKEND",version="1"} 2
nv_inference_request_success{model="digits",version="1"} 300
nv_inference_request_duration_us{model="digits",version="1"} 6000000
nv_inference_queue_duration_us{model="digits",version="1"} 410000
nv_inference_request_success{model="idle",version="1"} 7
"""


def test_server_metrics_parse_failures_and_mean_times() -> None:
    before, after = parse_counters(_BEFORE), parse_counters(_AFTER)
    assert before[0] == Counter(name="nv_inference_request_failure", model="digits_preprocess",
                                version="1", reason="REJECTED", value=5.0)
    assert len(before) == 5  # nv_inference_count is not read
    assert failure_delta(before, after) == {"digits_preprocess/REJECTED": 4, "digits/BACKEND": 2}
    # digits: 200 more successes that took 5 s in all, 0.4 s of it queued
    assert model_times(before, after) == (
        ModelTimes(model="digits", succeeded=200, mean_request_ms=25.0, mean_queue_ms=2.0),
        ModelTimes(model="idle", succeeded=7, mean_request_ms=0.0, mean_queue_ms=0.0))
