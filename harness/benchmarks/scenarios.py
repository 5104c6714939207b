"""Benchmark scenarios (`harness/benchmarks/scenarios.yaml`): typed, frozen, validated at load.

`load_scenarios(path)` is the only way in. Every validation error is a `ScenarioError` naming
the file, the field path (for example `perf_analyzer[2].concurrency[1]`) and the fix.

A perf_analyzer scenario sweeps either concurrency or request rate. Values may be written as
one number, a list (`[1, 2, 4, 8]`) or a range (`{start: 1, end: 8, step: 1}`); a list that
is not evenly spaced runs as several perf_analyzer sweeps (see `PerfScenario.load_ranges`).
`defaults` holds fields shared by every scenario; a scenario's own fields override them.

`load_test` sets the hey runs of the systems side by side; its `peers` maps each peer hey
drives next to Triton (`fastapi`, `pytriton`) to the request shapes it is measured at (a subset
of `batch_images` that holds 1; all of them when `peers` is left out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import yaml
from tritonkit_client import Protocol

from harness.benchmarks.errors import ScenarioError
from harness.benchmarks.workloads import PIPELINES, WorkloadName
from tritonkit.spec import NAME_PATTERN
from tritonkit.tuning import LoadMode

SCENARIOS_VERSION = 1
MIN_TRIALS = 3  # perf_analyzer judges stability over the last 3 measurement windows
MIN_INTERVAL_MS = 50


class SharedMemory(str, Enum):
    NONE = "none"
    SYSTEM = "system"


class MeasurementMode(str, Enum):
    TIME_WINDOWS = "time_windows"  # each window lasts measurement_interval_ms
    COUNT_WINDOWS = "count_windows"  # each window holds >= measurement_request_count requests


class Peer(str, Enum):
    """The systems hey drives next to Triton (same load, byte-identical bodies)."""

    FASTAPI = "fastapi"  # FastAPI + ONNX Runtime (harness.benchmarks.fastapi_peer)
    PYTRITON = "pytriton"  # PyTriton: the pipeline as a Python callable (pytriton_peer)


@dataclass(frozen=True, kw_only=True)
class LoadRange:
    """One perf_analyzer sweep `start:end:step` (inclusive end)."""

    start: float
    end: float
    step: float

    def values(self) -> tuple[float, ...]:
        count = math.floor((self.end - self.start) / self.step + 1e-9) + 1
        return tuple(self.start + i * self.step for i in range(count))

    def flag_value(self) -> str:
        return ":".join(_number_text(v) for v in (self.start, self.end, self.step))


@dataclass(frozen=True, kw_only=True)
class PerfScenario:
    """One perf_analyzer run: what to load, how hard, and how long to measure."""

    name: str
    workload: WorkloadName
    model: str  # the ensemble by default; a composing model for per-step profiles
    protocol: Protocol = Protocol.GRPC
    concurrency: tuple[int, ...] | None = None
    request_rate: tuple[float, ...] | None = None  # requests per second
    batch_images: int = 1  # rows (images) per request: perf_analyzer's -b
    shared_memory: SharedMemory = SharedMemory.NONE
    measurement_mode: MeasurementMode = MeasurementMode.TIME_WINDOWS
    measurement_interval_ms: int = 5000
    measurement_request_count: int = 50  # count_windows only
    stability_percentage: float = 10.0
    # Judge stability on this latency percentile instead of the average (perf_analyzer's
    # --percentile): one stalled request on a shared machine then cannot fail a level.
    stability_percentile: int | None = None
    max_trials: int = 10
    timeout_s: float = 600.0  # the whole perf_analyzer process

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.request_rate is None):
            raise ValueError("a PerfScenario sweeps exactly one of concurrency, request_rate")

    @property
    def load_mode(self) -> LoadMode:
        return LoadMode.CONCURRENCY if self.concurrency is not None else LoadMode.REQUEST_RATE

    @property
    def load_values(self) -> tuple[float, ...]:
        if self.concurrency is not None:
            return tuple(float(v) for v in self.concurrency)
        return tuple(self.request_rate or ())

    def load_ranges(self) -> tuple[LoadRange, ...]:
        """The load values as the fewest evenly spaced perf_analyzer sweeps, in order."""
        return split_ranges(self.load_values)


@dataclass(frozen=True, kw_only=True)
class PeerLoad:
    """A peer hey drives, and the request shapes it is measured at (some of batch_images)."""

    peer: Peer
    batch_images: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class LoadTestSettings:
    """The HTTP load generator (hey) runs of systems side by side."""

    duration_s: float
    warmup_s: float
    concurrency: tuple[int, ...]
    batch_images: tuple[int, ...]  # request shapes: images per request (online 1, offline 16)
    # Every peer, in Peer order; the Triton variants run every shape of batch_images.
    peers: tuple[PeerLoad, ...] = ()

    def peer_shapes(self, peer: Peer) -> tuple[int, ...]:
        """The request shapes `peer` is measured at (none when it is not measured)."""
        return next((p.batch_images for p in self.peers if p.peer is peer), ())


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    source: Path
    input_images: int  # distinct real images per workload in perf_analyzer's input data
    divergence_factor: float  # flag client avg latency > factor x server-side latency
    perf: tuple[PerfScenario, ...]
    load_test: LoadTestSettings

    def scenario(self, name: str) -> PerfScenario:
        for scenario in self.perf:
            if scenario.name == name:
                return scenario
        raise ScenarioError(str(self.source), "perf_analyzer",
                            f"no scenario named {name!r}; have "
                            f"{', '.join(s.name for s in self.perf)}")


def split_ranges(values: tuple[float, ...]) -> tuple[LoadRange, ...]:
    """Greedy split of increasing values into evenly spaced runs: 1,2,4,8 -> 1:2:1, 4:8:4."""
    ranges: list[LoadRange] = []
    i = 0
    while i < len(values):
        start = values[i]
        if i + 1 == len(values):
            ranges.append(LoadRange(start=start, end=start, step=1.0))
            break
        step = values[i + 1] - start
        j = i + 1
        while j + 1 < len(values) and math.isclose(values[j + 1] - values[j], step):
            j += 1
        ranges.append(LoadRange(start=start, end=values[j], step=step))
        i = j + 1
    return tuple(ranges)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# --------------------------------------------------------------------------- loading

E = TypeVar("E", bound=Enum)

_TOP_LEVEL_KEYS = {"version", "input_images", "divergence_factor", "defaults", "perf_analyzer",
                   "load_test"}
_SCENARIO_KEYS = {"name", "workload", "model", "protocol", "concurrency", "request_rate",
                  "batch_images", "shared_memory", "measurement_mode", "measurement_interval_ms",
                  "measurement_request_count", "stability_percentage", "stability_percentile",
                  "max_trials", "timeout_s"}
_DEFAULTABLE_KEYS = _SCENARIO_KEYS - {"name", "model", "concurrency", "request_rate"}
_LOAD_TEST_KEYS = {"duration_s", "warmup_s", "concurrency", "batch_images", "peers"}


class _Node:
    """One YAML node plus the file and field path for error messages."""

    def __init__(self, source: str, value: Any, path: str) -> None:
        self.source = source
        self.value = value
        self.path = path

    def fail(self, problem: str, key: str | None = None) -> ScenarioError:
        return ScenarioError(self.source, self.join(key), problem)

    def join(self, key: str | None) -> str:
        if key is None:
            return self.path
        return f"{self.path}.{key}" if self.path else key

    def mapping(self, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(self.value, dict):
            raise self.fail(f"must be a mapping, got {type(self.value).__name__}")
        unknown = sorted(str(k) for k in self.value if k not in allowed)
        if unknown:
            raise self.fail(f"unknown field(s) {', '.join(unknown)}; allowed: "
                            f"{', '.join(sorted(allowed))}")
        return self.value

    def child(self, key: str, fallback: dict[str, Any] | None = None) -> _Node:
        value = self.value.get(key) if isinstance(self.value, dict) else None
        if value is None and fallback is not None and fallback.get(key) is not None:
            return _Node(self.source, fallback[key], f"defaults.{key}")
        return _Node(self.source, value, self.join(key))

    @property
    def missing(self) -> bool:
        return self.value is None

    def integer(self, *, minimum: int | None = None, default: int | None = None) -> int:
        if self.value is None and default is not None:
            return default
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.fail(f"must be an integer, got {self.value!r}")
        if minimum is not None and self.value < minimum:
            raise self.fail(f"must be >= {minimum}, got {self.value}")
        return self.value

    def number(self, *, greater_than: float | None = None, minimum: float | None = None,
               maximum: float | None = None, default: float | None = None) -> float:
        if self.value is None and default is not None:
            return default
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)) \
                or not math.isfinite(self.value):
            raise self.fail(f"must be a finite number, got {self.value!r}")
        value = float(self.value)
        if greater_than is not None and value <= greater_than:
            raise self.fail(f"must be > {_number_text(greater_than)}, got {self.value}")
        if minimum is not None and value < minimum:
            raise self.fail(f"must be >= {_number_text(minimum)}, got {self.value}")
        if maximum is not None and value > maximum:
            raise self.fail(f"must be <= {_number_text(maximum)}, got {self.value}")
        return value

    def string(self) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.fail(f"must be a non-empty string, got {self.value!r}")
        return self.value

    def choice(self, enum_type: type[E], default: E | None = None) -> E:
        if self.value is None and default is not None:
            return default
        try:
            return enum_type(self.value)
        except ValueError:
            choices = ", ".join(str(e.value) for e in enum_type)
            raise self.fail(f"must be one of {choices}, got {self.value!r}") from None

    def numbers(self, *, integer: bool) -> tuple[float, ...]:
        """One number, a list of numbers, or {start, end, step}; positive and increasing."""
        kind = "integer" if integer else "number"
        value = self.value
        if isinstance(value, dict):
            self.mapping({"start", "end", "step"})
            start = self.child("start").number(greater_than=0)
            end = self.child("end").number(minimum=start)
            step = self.child("step").number(greater_than=0, default=1.0)
            values = list(LoadRange(start=start, end=end, step=step).values())
        elif isinstance(value, list):
            if not value:
                raise self.fail(f"must list at least one {kind}")
            values = [_Node(self.source, v, f"{self.path}[{i}]").number(greater_than=0)
                      for i, v in enumerate(value)]
        elif value is None:
            raise self.fail(f"is required: a {kind}, a list or {{start, end, step}}")
        else:
            values = [self.number(greater_than=0)]
        for i, v in enumerate(values):
            if integer and not float(v).is_integer():
                raise self.fail(f"must hold integers, got {_number_text(v)} at position {i}")
            if i and v <= values[i - 1]:
                raise self.fail(f"must be strictly increasing, got {_number_text(v)} after "
                                f"{_number_text(values[i - 1])}")
        return tuple(values)


def _percentile(node: _Node) -> int | None:
    if node.missing:
        return None
    value = node.integer(minimum=1)
    if value > 99:
        raise node.fail(f"must be a percentile between 1 and 99, got {value}")
    return value


def _scenario(node: _Node, defaults: dict[str, Any]) -> PerfScenario:
    node.mapping(_SCENARIO_KEYS)
    name = node.child("name").string()
    if not NAME_PATTERN.match(name):
        raise node.fail(f"{name!r} is not a safe name: use letters, digits, '_' or '-'", "name")
    workload = node.child("workload", defaults).choice(WorkloadName)
    model_node = node.child("model")
    model = PIPELINES[workload] if model_node.missing else model_node.string()
    if not NAME_PATTERN.match(model):
        raise model_node.fail(f"{model!r} is not a valid Triton model name")
    has_concurrency = not node.child("concurrency").missing
    has_rate = not node.child("request_rate").missing
    if has_concurrency == has_rate:
        raise node.fail("set exactly one of concurrency or request_rate (perf_analyzer sweeps "
                        "one of them)")
    concurrency = request_rate = None
    if has_concurrency:
        concurrency = tuple(int(v) for v in node.child("concurrency").numbers(integer=True))
    else:
        request_rate = node.child("request_rate").numbers(integer=False)

    def get(key: str) -> _Node:
        return node.child(key, defaults)

    mode = get("measurement_mode").choice(MeasurementMode, MeasurementMode.TIME_WINDOWS)
    return PerfScenario(
        name=name,
        workload=workload,
        model=model,
        protocol=get("protocol").choice(Protocol, Protocol.GRPC),
        concurrency=concurrency,
        request_rate=request_rate,
        batch_images=get("batch_images").integer(minimum=1, default=1),
        shared_memory=get("shared_memory").choice(SharedMemory, SharedMemory.NONE),
        measurement_mode=mode,
        measurement_interval_ms=get("measurement_interval_ms").integer(minimum=MIN_INTERVAL_MS,
                                                                      default=5000),
        measurement_request_count=get("measurement_request_count").integer(minimum=1,
                                                                          default=50),
        stability_percentage=get("stability_percentage").number(greater_than=0, maximum=1000,
                                                                default=10.0),
        stability_percentile=_percentile(get("stability_percentile")),
        max_trials=get("max_trials").integer(minimum=MIN_TRIALS, default=10),
        timeout_s=get("timeout_s").number(greater_than=0, default=600.0),
    )


def _peers(node: _Node, batch_images: tuple[int, ...]) -> tuple[PeerLoad, ...]:
    """`peers`: {peer: images per request}. Missing: every peer at every shape. Each peer must
    be named (the summary compares Triton with each) and measured online (1 image per
    request, the summary's shape) if batch_images has it; its shapes come from batch_images."""
    if node.missing:
        return tuple(PeerLoad(peer=peer, batch_images=batch_images) for peer in Peer)
    mapping = node.mapping({peer.value for peer in Peer})
    missing = [peer.value for peer in Peer if peer.value not in mapping]
    if missing:
        raise node.fail(f"must name every peer ({', '.join(p.value for p in Peer)}): the "
                        f"summary compares Triton with each; missing {', '.join(missing)}")
    peers = []
    for peer in Peer:
        child = node.child(peer.value)
        shapes = tuple(int(v) for v in child.numbers(integer=True))
        extra = [s for s in shapes if s not in batch_images]
        if extra:
            raise child.fail(f"must be among load_test.batch_images {list(batch_images)}, "
                             f"got {extra}")
        if 1 in batch_images and 1 not in shapes:
            raise child.fail("must include 1: the summary compares the systems online (1 "
                             "image per request)")
        peers.append(PeerLoad(peer=peer, batch_images=shapes))
    return tuple(peers)


def _load_test(node: _Node) -> LoadTestSettings:
    node.mapping(_LOAD_TEST_KEYS)
    shapes = node.child("batch_images")
    batch_images = (1,) if shapes.missing else tuple(
        int(v) for v in shapes.numbers(integer=True))
    return LoadTestSettings(
        duration_s=node.child("duration_s").number(greater_than=0),
        warmup_s=node.child("warmup_s").number(minimum=0, default=0.0),
        concurrency=tuple(int(v) for v in node.child("concurrency").numbers(integer=True)),
        batch_images=batch_images,
        peers=_peers(node.child("peers"), batch_images),
    )


def parse_scenarios(document: Any, *, source: str, path: Path | None = None) -> BenchConfig:
    """A BenchConfig from an already loaded YAML document (`source` names it in errors)."""
    root = _Node(source, document, "")
    root.mapping(_TOP_LEVEL_KEYS)
    version = root.child("version")
    if version.missing or version.value != SCENARIOS_VERSION:
        raise version.fail(f"must be {SCENARIOS_VERSION}, got {version.value!r}")
    defaults_node = root.child("defaults")
    defaults: dict[str, Any] = {}
    if not defaults_node.missing:
        defaults = defaults_node.mapping(_DEFAULTABLE_KEYS)
    perf_node = root.child("perf_analyzer")
    if not isinstance(perf_node.value, list) or not perf_node.value:
        raise perf_node.fail("is required: a list of scenarios, each with name, workload and "
                             "concurrency or request_rate")
    scenarios = tuple(_scenario(_Node(source, item, f"perf_analyzer[{i}]"), defaults)
                      for i, item in enumerate(perf_node.value))
    seen: set[str] = set()
    for i, scenario in enumerate(scenarios):
        if scenario.name in seen:
            raise ScenarioError(source, f"perf_analyzer[{i}].name",
                                f"duplicate scenario name {scenario.name!r}: names must be "
                                "unique")
        seen.add(scenario.name)
    load_test_node = root.child("load_test")
    if load_test_node.missing:
        raise load_test_node.fail("is required: {duration_s, concurrency} of the hey runs")
    return BenchConfig(
        source=path if path is not None else Path(source),
        input_images=root.child("input_images").integer(minimum=1, default=64),
        divergence_factor=root.child("divergence_factor").number(greater_than=1.0, default=2.0),
        perf=scenarios,
        load_test=_load_test(load_test_node),
    )


def load_scenarios(path: Path) -> BenchConfig:
    """Read and validate a scenarios YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(str(path), "", f"cannot read: {e.strerror or e}") from e
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ScenarioError(str(path), "", f"is not valid YAML: {e}") from e
    return parse_scenarios(document, source=str(path), path=path)
