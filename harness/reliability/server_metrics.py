"""Triton's per-model Prometheus counters: failures by reason, and where accepted requests
spent their time (the server's own view, free of the load generator's CPU).

`nv_inference_request_failure` carries a `reason` label (REJECTED, CANCELED, BACKEND,
OTHER); `nv_inference_request_duration_us` and `nv_inference_queue_duration_us` are summed
over successful requests, `nv_inference_request_success` counts them. Two scrapes give the
counts and mean durations in between.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from dataclasses import dataclass

from harness.reliability.errors import ReliabilityError

FAILURE = "nv_inference_request_failure"
SUCCESS = "nv_inference_request_success"
REQUEST_US = "nv_inference_request_duration_us"
QUEUE_US = "nv_inference_queue_duration_us"
COUNTERS = (FAILURE, SUCCESS, REQUEST_US, QUEUE_US)
_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][\w:]*)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, kw_only=True)
class Counter:
    name: str
    model: str
    version: str
    reason: str  # "" for counters without a reason label
    value: float

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.name, self.model, self.version, self.reason


@dataclass(frozen=True, kw_only=True)
class ModelTimes:
    """Successful requests of one model between two scrapes, with their mean durations."""

    model: str
    succeeded: int
    mean_request_ms: float  # in the server, from arrival at the model to its response
    mean_queue_ms: float  # of which waiting in the model's queue


def parse_counters(text: str, names: tuple[str, ...] = COUNTERS) -> tuple[Counter, ...]:
    """The samples of the counters `names` in a Prometheus text exposition."""
    found = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] not in names:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        try:
            value = float(match["value"])
        except ValueError as e:
            raise ReliabilityError(f"unreadable metric sample {line!r}") from e
        found.append(Counter(name=match["name"], model=labels.get("model", ""),
                             version=labels.get("version", ""),
                             reason=labels.get("reason", ""), value=value))
    return tuple(found)


def read_counters(metrics_url: str, *, timeout_s: float = 10.0) -> tuple[Counter, ...]:
    """Scrape `<metrics_url>/metrics` (e.g. http://127.0.0.1:8002)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{metrics_url}/metrics", timeout=timeout_s) as response:
            text = response.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError) as e:
        raise ReliabilityError(f"cannot read metrics from {metrics_url}: {e}") from e
    return parse_counters(text)


def _growth(before: tuple[Counter, ...], after: tuple[Counter, ...]) -> list[Counter]:
    old = {c.key: c.value for c in before}
    return [Counter(name=c.name, model=c.model, version=c.version, reason=c.reason,
                    value=c.value - old.get(c.key, 0.0)) for c in after]


def failure_delta(before: tuple[Counter, ...], after: tuple[Counter, ...]) -> dict[str, int]:
    """New failed requests between two scrapes: "<model>/<reason>" -> count (non-zero)."""
    delta: dict[str, int] = {}
    for c in _growth(before, after):
        if c.name == FAILURE and c.value:
            key = f"{c.model}/{c.reason or 'unlabelled'}"
            delta[key] = delta.get(key, 0) + int(c.value)
    return delta


def model_times(before: tuple[Counter, ...], after: tuple[Counter, ...]) -> tuple[ModelTimes, ...]:
    """Per model with successful requests in between: their count and mean durations."""
    sums: dict[str, dict[str, float]] = {}
    for c in _growth(before, after):
        if c.name in (SUCCESS, REQUEST_US, QUEUE_US):
            per_model = sums.setdefault(c.model, {})
            per_model[c.name] = per_model.get(c.name, 0.0) + c.value
    times = []
    for model, values in sorted(sums.items()):
        succeeded = int(values.get(SUCCESS, 0.0))
        if succeeded <= 0:
            continue
        times.append(ModelTimes(
            model=model, succeeded=succeeded,
            mean_request_ms=round(values.get(REQUEST_US, 0.0) / succeeded / 1000, 2),
            mean_queue_ms=round(values.get(QUEUE_US, 0.0) / succeeded / 1000, 2)))
    return tuple(times)
