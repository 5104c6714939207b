"""Benchmark results -> results/bench/<UTC timestamp>/ (report.md, raw CSVs, PNG plots,
summary.json), the `latest` pointer, and the comparison of two runs (`--compare DIR`).

Layout of one run directory:

    report.md                      tables per workload, plots, summary with targets, profile
    summary.json                   exactly the summary keys, each a number
    raw/<workload>__<shape>__<system>.csv   one hey sweep: concurrency, rps, p50..p99, errors
    raw/limits.csv                 the in-process limit per workload and shape (if any)
    raw/perf_analyzer.csv          the perf_analyzer points, all their fields (if any)
    raw/perf_<type>.csv            other perf records (e.g. per-step latencies), per type
    plots/<workload>_<shape>.png   throughput (images/s) against p99 latency, one line per system
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.benchmarks.errors import BenchmarkError
from harness.benchmarks.hey_driver import LoadResult
from harness.benchmarks.perf_analyzer import PerfPoint
from harness.benchmarks.scenarios import LoadMode

logger = logging.getLogger(__name__)

TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
LATEST = "latest"
RAW_DIR = "raw"
PLOTS_DIR = "plots"
REPORT_MD = "report.md"
SUMMARY_JSON = "summary.json"
SERIES_CSV_COLUMNS = ("concurrency", "rps", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "errors")
SERIES_SEPARATOR = "__"


class RequestShape(str, enum.Enum):
    """How many images one request carries."""

    ONLINE = "online"  # 1 image per request
    OFFLINE = "offline"  # 16 images per request

    @property
    def default_images_per_request(self) -> int:
        return 1 if self is RequestShape.ONLINE else 16


class Direction(enum.Enum):
    """Which way a metric improves."""

    HIGHER_IS_BETTER = "higher"
    LOWER_IS_BETTER = "lower"


@dataclass(frozen=True, kw_only=True)
class SystemSeries:
    """One system's hey sweep over concurrencies for one workload and request shape."""

    system: str
    workload: str
    shape: RequestShape
    points: tuple[LoadResult, ...]
    images_per_request: int | None = None  # None: the shape's default (1 or 16)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", RequestShape(self.shape))
        if not self.points:
            raise BenchmarkError(f"series {self.system}/{self.workload}/{self.shape.value} "
                                 "has no points")
        concurrencies = [p.concurrency for p in self.points]
        if len(set(concurrencies)) != len(concurrencies):
            raise BenchmarkError(f"series {self.system}/{self.workload}/{self.shape.value} "
                                 f"repeats a concurrency: {concurrencies}")
        object.__setattr__(self, "points",
                           tuple(sorted(self.points, key=lambda p: p.concurrency)))

    @property
    def images(self) -> int:
        if self.images_per_request is not None:
            return self.images_per_request
        return self.shape.default_images_per_request

    @property
    def peak(self) -> LoadResult:
        """The point with the highest throughput."""
        return max(self.points, key=lambda p: p.throughput_rps)

    @property
    def file_stem(self) -> str:
        return SERIES_SEPARATOR.join(
            (_slug(self.workload), self.shape.value, _slug(self.system)))


@dataclass(frozen=True, kw_only=True)
class LimitResult:
    """The in-process limit: same functions, one process per core, best batch size."""

    workload: str
    shape: RequestShape
    images_per_s: float
    batch_size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", RequestShape(self.shape))


@dataclass(frozen=True, kw_only=True)
class ProfileSection:
    """A block of the report's "Profile" section supplied by the runner: text and/or a table."""

    title: str
    text: str = ""
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[object, ...], ...] = ()

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise BenchmarkError(f"profile table {self.title!r}: row {row} does not have "
                                     f"{len(self.columns)} cells")


@dataclass(frozen=True, kw_only=True)
class TargetCheck:
    """One target of the issue and whether the summary meets it."""

    key: str
    description: str
    met: bool


@dataclass(frozen=True, kw_only=True)
class Summary:
    """The summary keys (online shape; see runner.summarize for where each is read)."""

    heavy_triton_vs_limit: float
    heavy_triton_vs_fastapi: float
    light_triton_vs_fastapi: float
    heavy_triton_vs_pytriton: float
    light_triton_vs_pytriton: float
    heavy_dynamic_batching_gain: float
    heavy_batching_ceiling: float  # in-process images/s at the best batch over batch 1
    light_p99_ms_triton: float
    light_p99_ms_fastapi: float

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BenchmarkError(f"summary key {field.name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise BenchmarkError(f"summary key {field.name} must be finite, got {value}")
            object.__setattr__(self, field.name, float(value))

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def targets(self) -> tuple[TargetCheck, ...]:
        """The issue's targets for this 2-core machine."""
        gain_target = 0.9 * self.heavy_batching_ceiling
        return (
            TargetCheck(key="light_triton_vs_fastapi", description=">= 1.5",
                        met=self.light_triton_vs_fastapi >= 1.5),
            TargetCheck(key="light_p99_ms_triton", description="<= light_p99_ms_fastapi",
                        met=self.light_p99_ms_triton <= self.light_p99_ms_fastapi),
            TargetCheck(key="heavy_triton_vs_fastapi", description=">= 1.05 (peak to peak)",
                        met=self.heavy_triton_vs_fastapi >= 1.05),
            TargetCheck(key="heavy_triton_vs_limit", description=">= 0.95 (Triton's peak)",
                        met=self.heavy_triton_vs_limit >= 0.95),
            TargetCheck(key="heavy_dynamic_batching_gain",
                        description=f">= 0.9 x the in-process batching ceiling "
                                    f"{self.heavy_batching_ceiling:.3g} = {gain_target:.3g}",
                        met=self.heavy_dynamic_batching_gain >= gain_target),
            TargetCheck(key="light_triton_vs_pytriton", description="> 1 (Triton ahead)",
                        met=self.light_triton_vs_pytriton > 1.0),
            TargetCheck(key="heavy_triton_vs_pytriton", description="> 1 (Triton ahead)",
                        met=self.heavy_triton_vs_pytriton > 1.0),
        )

    def to_dict(self) -> dict[str, float]:
        return {key: getattr(self, key) for key in self.keys()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_mapping(cls, data: Mapping[str, object], *, source: str) -> Summary:
        """Check that `data` holds exactly the summary keys, each a number."""
        expected = set(cls.keys())
        missing, extra = expected - set(data), set(data) - expected
        if missing or extra:
            raise BenchmarkError(f"{source}: summary keys differ: missing {sorted(missing)}, "
                                 f"unexpected {sorted(extra)}")
        try:
            return cls(**{key: data[key] for key in cls.keys()})  # type: ignore[arg-type]
        except BenchmarkError as e:
            raise BenchmarkError(f"{source}: {e}") from e


@dataclass(frozen=True, kw_only=True)
class BenchResults:
    """Everything one benchmark run measured. `perf_points` are harness.benchmarks.perf_analyzer's
    PerfPoint records (shown as the latency breakdown table); any other dataclass records
    (e.g. per-step latencies) get a table of their fields per type."""

    started_at: datetime
    machine: Mapping[str, str]
    series: tuple[SystemSeries, ...]
    limits: tuple[LimitResult, ...]
    perf_points: tuple[Any, ...]
    summary: Summary
    notes: tuple[str, ...] = ()
    profile: tuple[ProfileSection, ...] = ()

    def __post_init__(self) -> None:
        stems = [s.file_stem for s in self.series]
        duplicates = sorted({s for s in stems if stems.count(s) > 1})
        if duplicates:
            raise BenchmarkError(f"two series share workload, shape and system: {duplicates}")
        for point in self.perf_points:
            if not dataclasses.is_dataclass(point) or isinstance(point, type):
                raise BenchmarkError(f"perf point is not a dataclass instance: {point!r}")

    @property
    def workloads(self) -> tuple[str, ...]:
        names = [s.workload for s in self.series] + [limit.workload for limit in self.limits]
        return tuple(dict.fromkeys(names))

    @property
    def systems(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.system for s in self.series))


@dataclass(frozen=True, kw_only=True)
class Regression:
    """A metric that got worse than the tolerance allows."""

    metric: str
    old: float
    new: float
    change_pct: float


# ---------------------------------------------------------------------------------------------
# formatting helpers


def _slug(text: str) -> str:
    """A file-name-safe form of a label (no path separators, no double underscores)."""
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-.")
    return slug or "unnamed"


def format_number(value: object) -> str:
    """Compact numbers for tables; other values as text."""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; cells are formatted with format_number."""

    def cell(value: object) -> str:
        return format_number(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _flatten(record: Any, prefix: str = "") -> dict[str, object]:
    """Dataclass fields as name -> value; nested dataclasses become prefixed columns."""
    flat: dict[str, object] = {}
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        name = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            flat.update(_flatten(value, prefix=f"{name}."))
        elif isinstance(value, tuple | list):
            flat[name] = " ".join(format_number(v) for v in value)
        else:
            flat[name] = value
    return flat


def _flat_table(records: Sequence[Any]) -> tuple[list[str], list[list[object]]]:
    flats = [_flatten(r) for r in records]
    columns = list(dict.fromkeys(name for flat in flats for name in flat))
    return columns, [[flat.get(c, "") for c in columns] for flat in flats]


# ---------------------------------------------------------------------------------------------
# writing one run


def _run_directory(out_root: Path, started_at: datetime) -> Path:
    stamp = started_at.astimezone(timezone.utc).strftime(TIMESTAMP_FORMAT)
    out_root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):
        name = stamp if attempt == 0 else f"{stamp}-{attempt}"
        candidate = out_root / name
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise BenchmarkError(f"cannot create a run directory under {out_root} for {stamp}")


def _write_series_csv(series: SystemSeries, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(SERIES_CSV_COLUMNS)
        for p in series.points:
            writer.writerow([p.concurrency, f"{p.throughput_rps:.3f}", f"{p.p50_ms:.3f}",
                             f"{p.p90_ms:.3f}", f"{p.p95_ms:.3f}", f"{p.p99_ms:.3f}", p.errors])


def _write_records_csv(columns: Sequence[str], rows: Sequence[Sequence[object]],
                       path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([v.value if isinstance(v, enum.Enum) else v for v in row])


def _plot(group: Sequence[SystemSeries], limit: LimitResult | None, title: str,
          path: Path) -> None:
    """Throughput (images/s) against p99 latency, one line per system, markers labelled by
    concurrency; the in-process limit as a vertical line."""
    figure = Figure(figsize=(8, 5.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    p99s: list[float] = []
    for series in group:
        xs = [p.throughput_rps * series.images for p in series.points]
        ys = [p.p99_ms for p in series.points]
        p99s += ys
        (line,) = axes.plot(xs, ys, marker="o", label=series.system)
        for x, y, point in zip(xs, ys, series.points, strict=True):
            axes.annotate(f"c={point.concurrency}", (x, y), textcoords="offset points",
                          xytext=(4, 4), fontsize=7, color=line.get_color())
    if limit is not None:
        axes.axvline(limit.images_per_s, linestyle="--", color="grey",
                     label=f"in-process limit ({format_number(limit.images_per_s)} img/s)")
    positive = [y for y in p99s if y > 0]
    if positive and max(positive) / min(positive) > 50:
        axes.set_yscale("log")
    axes.set_xlabel("throughput (images/s)")
    axes.set_ylabel("p99 latency (ms)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png")


# Summary keys that are not targets themselves: the target each one is the reference of.
REFERENCES = {"light_p99_ms_fastapi": "light_p99_ms_triton",
              "heavy_batching_ceiling": "heavy_dynamic_batching_gain"}


def _summary_section(summary: Summary) -> list[str]:
    checks = {check.key: check for check in summary.targets()}
    rows: list[list[object]] = []
    for key in summary.keys():
        check = checks.get(key)
        if check is None:
            rows.append([key, getattr(summary, key), f"reference for {REFERENCES[key]}", "-"])
        else:
            rows.append([key, getattr(summary, key), check.description,
                         "pass" if check.met else "MISS"])
    met = sum(check.met for check in checks.values())
    return ["## Summary", "",
            "Online request shape (1 image per request). Light keys are read at the concurrency "
            "where the peer peaks; heavy keys compare each system's own peak; the batching gain "
            "is read at the highest concurrency both Triton variants ran. `summary.json` holds "
            "these numbers.", "",
            markdown_table(["key", "value", "target", "status"], rows), "",
            f"{met} of {len(checks)} targets met.", ""]


def _workload_section(results: BenchResults, workload: str, run_dir: Path) -> list[str]:
    lines = [f"## Workload: {workload}", ""]
    for shape in RequestShape:
        group = [s for s in results.series if s.workload == workload and s.shape is shape]
        limit = next((lim for lim in results.limits
                      if lim.workload == workload and lim.shape is shape), None)
        if not group and limit is None:
            continue
        images = group[0].images if group else shape.default_images_per_request
        lines += [f"### {workload} / {shape.value} ({images} image{'s' if images > 1 else ''} "
                  "per request)", ""]
        if limit is not None:
            batch = f" at batch size {limit.batch_size}" if limit.batch_size else ""
            lines += [f"In-process limit: **{format_number(limit.images_per_s)} images/s**"
                      f"{batch}.", ""]
        if group:
            rows = [[s.system, p.concurrency, p.throughput_rps, p.throughput_rps * s.images,
                     p.p50_ms, p.p95_ms, p.p99_ms, p.errors]
                    for s in group for p in s.points]
            lines += [markdown_table(["system", "concurrency", "req/s", "images/s", "p50 ms",
                                      "p95 ms", "p99 ms", "errors"], rows), ""]
            plot = run_dir / PLOTS_DIR / f"{_slug(workload)}_{shape.value}.png"
            _plot(group, limit, f"{workload}, {shape.value}: throughput vs p99", plot)
            relative = plot.relative_to(run_dir).as_posix()
            lines += [f"![{workload} {shape.value}: throughput vs p99 latency]({relative})", ""]
            lines += ["Raw data: " + ", ".join(
                f"[{s.system}]({RAW_DIR}/{s.file_stem}.csv)" for s in group), ""]
    return lines


PERF_COLUMNS = ("scenario", "model", "protocol", "load", "batch", "infer/s", "p50 ms", "p99 ms",
                "client send us", "network us", "server queue us", "compute input us",
                "compute infer us", "compute output us", "client recv us", "client/server",
                "diverged")


def _load_text(point: PerfPoint) -> str:
    load = int(point.load) if float(point.load).is_integer() else point.load
    return f"{load} req/s" if point.load_mode is LoadMode.REQUEST_RATE else f"c={load}"


def _perf_row(point: PerfPoint) -> list[object]:
    b = point.breakdown
    return [point.scenario, point.model, point.protocol, _load_text(point), point.batch_images,
            point.throughput_infer_s, point.latency_p50_us / 1e3, point.latency_p99_us / 1e3,
            b.client_send_us, b.network_server_send_recv_us, b.server_queue_us,
            b.server_compute_input_us, b.server_compute_infer_us, b.server_compute_output_us,
            b.client_recv_us, point.client_server_ratio, "**yes**" if point.diverged else "no"]


def _perf_groups(records: Sequence[Any]) -> dict[str, list[Any]]:
    """Records by type: PerfPoints under "perf_analyzer", other dataclasses by class name."""
    groups: dict[str, list[Any]] = {}
    for record in records:
        name = "perf_analyzer" if isinstance(record, PerfPoint) else \
            f"perf_{_slug(type(record).__name__).lower()}"
        groups.setdefault(name, []).append(record)
    return groups


def _perf_section(results: BenchResults) -> list[str]:
    lines = ["## perf_analyzer latency breakdown", ""]
    if not results.perf_points:
        return [*lines, "No perf_analyzer points in this run.", ""]
    for name, records in _perf_groups(results.perf_points).items():
        if name == "perf_analyzer":
            lines += ["Average latency breakdown per point in microseconds, p50/p99 in ms. "
                      "`client/server` is the client's average latency over the server-side "
                      "request latency; `diverged` flags points where the client sees much more "
                      "than the server spends (client, network, serialization or a CPU-starved "
                      f"perf_analyzer). Raw: [{name}.csv]({RAW_DIR}/{name}.csv).", "",
                      markdown_table(PERF_COLUMNS, [_perf_row(p) for p in records]), ""]
            diverged = [p for p in records if p.diverged]
            if diverged:
                lines += [f"{len(diverged)} point(s) diverged: " + ", ".join(
                    f"{p.scenario} {p.model} at {_load_text(p)} "
                    f"(x{format_number(p.client_server_ratio)})" for p in diverged) + ".", ""]
        else:
            columns, rows = _flat_table(records)
            lines += [f"### {type(records[0]).__name__}", "",
                      f"Raw: [{name}.csv]({RAW_DIR}/{name}.csv).", "",
                      markdown_table(columns, rows), ""]
    return lines


def _profile_section(results: BenchResults) -> list[str]:
    lines = ["## Profile", ""]
    if not results.profile:
        return [*lines, "No profile supplied for this run.", ""]
    for section in results.profile:
        lines += [f"### {section.title}", ""]
        if section.text:
            lines += [section.text.strip(), ""]
        if section.columns:
            lines += [markdown_table(section.columns, section.rows), ""]
    return lines


def render_report(results: BenchResults, run_dir: Path) -> str:
    """report.md's text; writes the plots it links to into run_dir/plots."""
    stamp = results.started_at.astimezone(timezone.utc).isoformat(timespec="seconds")
    lines = [f"# Benchmark report {run_dir.name}", "", f"Started {stamp}.", ""]
    if results.machine:
        lines += ["## Machine", "",
                  markdown_table(["property", "value"], sorted(results.machine.items())), ""]
    lines += ["Systems: " + ", ".join(f"`{s}`" for s in results.systems) + ".",
              "Workloads: " + ", ".join(f"`{w}`" for w in results.workloads) + ".",
              "hey is closed-loop: concurrency = workers, one request outstanding each; "
              "Triton and the FastAPI peer get byte-identical request bodies.", ""]
    lines += _summary_section(results.summary)
    for workload in results.workloads:
        lines += _workload_section(results, workload, run_dir)
    lines += _perf_section(results)
    lines += _profile_section(results)
    if results.notes:
        lines += ["## Notes", "", *(f"- {note}" for note in results.notes), ""]
    return "\n".join(lines)


def update_latest(out_root: Path, run_dir: Path, *, use_symlink: bool = True) -> Path:
    """Point out_root/latest at run_dir: a relative symlink swapped in atomically with
    os.replace, or, where symlinks are impossible (or use_symlink is False), a copy."""
    latest = out_root / LATEST
    staging = out_root / f".{LATEST}.{os.getpid()}"
    _remove(staging)
    if use_symlink:
        try:
            staging.symlink_to(run_dir.name, target_is_directory=True)
        except OSError as e:
            logger.warning("symlinks unavailable under %s (%s); copying the run instead",
                           out_root, e)
        else:
            if latest.is_dir() and not latest.is_symlink():
                shutil.rmtree(latest)  # a copy left by an earlier fallback
            os.replace(staging, latest)
            return latest
    shutil.copytree(run_dir, staging)
    _remove(latest)
    os.replace(staging, latest)
    return latest


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def write_report(results: BenchResults, out_root: Path) -> Path:
    """Write results/bench/<UTC timestamp>/ under out_root, update out_root/latest, return
    the run directory."""
    run_dir = _run_directory(out_root, results.started_at)
    (run_dir / RAW_DIR).mkdir()
    (run_dir / PLOTS_DIR).mkdir()
    for series in results.series:
        _write_series_csv(series, run_dir / RAW_DIR / f"{series.file_stem}.csv")
    if results.limits:
        _write_records_csv(*_flat_table(results.limits), run_dir / RAW_DIR / "limits.csv")
    for name, records in _perf_groups(results.perf_points).items():
        _write_records_csv(*_flat_table(records), run_dir / RAW_DIR / f"{name}.csv")
    (run_dir / REPORT_MD).write_text(render_report(results, run_dir), encoding="utf-8")
    (run_dir / SUMMARY_JSON).write_text(results.summary.to_json(), encoding="utf-8")
    update_latest(out_root, run_dir)
    logger.info("benchmark report written to %s", run_dir)
    return run_dir


# ---------------------------------------------------------------------------------------------
# comparing two runs

SUMMARY_DIRECTIONS: dict[str, Direction] = {
    "heavy_triton_vs_limit": Direction.HIGHER_IS_BETTER,
    "heavy_triton_vs_fastapi": Direction.HIGHER_IS_BETTER,
    "light_triton_vs_fastapi": Direction.HIGHER_IS_BETTER,
    "heavy_triton_vs_pytriton": Direction.HIGHER_IS_BETTER,
    "light_triton_vs_pytriton": Direction.HIGHER_IS_BETTER,
    "heavy_dynamic_batching_gain": Direction.HIGHER_IS_BETTER,
    "heavy_batching_ceiling": Direction.HIGHER_IS_BETTER,
    "light_p99_ms_triton": Direction.LOWER_IS_BETTER,
    "light_p99_ms_fastapi": Direction.LOWER_IS_BETTER,
}


@dataclass(frozen=True, kw_only=True)
class _SeriesRow:
    concurrency: int
    rps: float
    p99_ms: float


def load_summary(run_dir: Path) -> Summary:
    path = run_dir / SUMMARY_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BenchmarkError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise BenchmarkError(f"{path}: expected a JSON object")
    return Summary.from_mapping(data, source=str(path))


def _load_series_csv(path: Path) -> list[_SeriesRow]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return [_SeriesRow(concurrency=int(row["concurrency"]), rps=float(row["rps"]),
                               p99_ms=float(row["p99_ms"]))
                    for row in csv.DictReader(f)]
    except (OSError, KeyError, ValueError) as e:
        raise BenchmarkError(f"cannot read the series CSV {path}: {e}") from e


def _series_csvs(run_dir: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted((run_dir / RAW_DIR).glob(f"*{SERIES_SEPARATOR}*.csv"))}


def _check(metric: str, old: float, new: float, direction: Direction,
           tolerance: float) -> Regression | None:
    if old == 0:
        return None
    worse = (new < (1 - tolerance) * old if direction is Direction.HIGHER_IS_BETTER
             else new > (1 + tolerance) * old)
    if not worse:
        return None
    return Regression(metric=metric, old=old, new=new, change_pct=(new - old) / old * 100)


def compare(current: Path, saved: Path, *, tolerance: float = 0.10) -> list[Regression]:
    """Regressions of the run in `current` against the run in `saved`.

    Throughput-like numbers (the summary ratios, each series' peak req/s) regress when they fall
    below (1 - tolerance) x old; p99 latencies (the summary's, each series' p99 at every
    concurrency both runs measured) regress when they rise above (1 + tolerance) x old.
    Series present in only one run are skipped with a log message.
    """
    if not 0 <= tolerance < 1:
        raise BenchmarkError(f"tolerance must be in [0, 1), got {tolerance}")
    regressions: list[Regression] = []
    old_summary, new_summary = load_summary(saved), load_summary(current)
    for key, direction in SUMMARY_DIRECTIONS.items():
        found = _check(f"summary.{key}", getattr(old_summary, key), getattr(new_summary, key),
                       direction, tolerance)
        if found:
            regressions.append(found)
    old_series, new_series = _series_csvs(saved), _series_csvs(current)
    for stem in sorted(set(old_series) ^ set(new_series)):
        logger.info("series %s is in only one of the runs; not compared", stem)
    for stem in sorted(set(old_series) & set(new_series)):
        name = stem.replace(SERIES_SEPARATOR, "/")
        old_rows, new_rows = _load_series_csv(old_series[stem]), _load_series_csv(new_series[stem])
        if not old_rows or not new_rows:
            continue
        found = _check(f"{name} peak req/s", max(r.rps for r in old_rows),
                       max(r.rps for r in new_rows), Direction.HIGHER_IS_BETTER, tolerance)
        if found:
            regressions.append(found)
        new_by_c = {r.concurrency: r for r in new_rows}
        for old_row in old_rows:
            new_row = new_by_c.get(old_row.concurrency)
            if new_row is None:
                continue
            found = _check(f"{name} p99 ms at concurrency {old_row.concurrency}",
                           old_row.p99_ms, new_row.p99_ms, Direction.LOWER_IS_BETTER, tolerance)
            if found:
                regressions.append(found)
    return regressions


def format_regressions(regressions: Sequence[Regression]) -> str:
    """Human-readable lines, one per regression."""
    if not regressions:
        return "no regressions"
    lines = [f"{len(regressions)} regression{'s' if len(regressions) > 1 else ''}:"]
    lines += [f"  {r.metric}: {format_number(r.old)} -> {format_number(r.new)} "
              f"({r.change_pct:+.1f}%)" for r in regressions]
    return "\n".join(lines)
