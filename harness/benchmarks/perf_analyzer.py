"""Drive Triton's perf_analyzer with real input data and read its results back as typed points.

- `find_perf_analyzer()` locates the 2.50.0 binary of the tritonclient wheel and the two
  native libraries it needs (libcudart.so.12 from nvidia-cuda-runtime-cu12, libb64.so.0d).
- `write_input_data(samples, path)` writes perf_analyzer's `--input-data` JSON from real
  samples: one `"data"` entry per row (a batch-1 tensor); a request of `-b N` takes N
  consecutive entries, so requests vary. Every tensor is `{"content": {"b64": ...},
  "shape": [...]}`; BYTES elements are serialized as 4-byte little-endian length + bytes, the
  layout perf_analyzer's input_data.md prescribes, numeric tensors as little-endian raw bytes.
- `perf_command(...)` builds the command line; `run_perf_analyzer(...)` runs it and parses the
  `-f` CSV (`--verbose-csv`: the latency breakdown) by header names, plus the server-side
  statistics perf_analyzer prints (for an ensemble: each composing model).
- `profile_pipeline(...)` profiles an ensemble and then each of its steps on its own, each fed
  the real tensors that step sees inside the pipeline (captured by running the pipeline
  in-process with `ReferencePipeline`): PNG bytes for preprocess, pixels for the classifier;
  UTF-8 sentences, token ids and hidden states for embeddings. Where a
  step input has a variable dim (token rows), each row is captured on its own at batch 1, so
  every `--input-data` entry keeps its own length (`"shape"` per entry) instead of the
  padding of a batch it never belonged to.

Divergence: `divergence(point)` is the client's average latency over the server-side request
latency. The server side is perf_analyzer's "Server: Avg request latency" (overhead + queue +
compute; for an ensemble that includes every composing model's queue) and, if that section is
missing, the CSV's server queue + compute columns. (The CSV alone understates an ensemble: its
"Server Queue" column leaves out the composing models' queues.) A point is flagged `diverged`
when the ratio exceeds the scenario file's `divergence_factor` (default 2.0): more than half of
the latency the client sees then comes from outside the server (client, network,
(de)serialization, or perf_analyzer itself short of CPU on a machine it shares with the server).

Units: latencies in microseconds as perf_analyzer reports them; `throughput_infer_s` counts
inferences, i.e. rows/images (a request of 16 images counts 16), `requests_per_s` requests.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import np_to_triton_dtype, triton_to_np_dtype

from harness.benchmarks.errors import PerfAnalyzerError
from harness.benchmarks.scenarios import (
    LoadMode,
    LoadRange,
    MeasurementMode,
    PerfScenario,
    Protocol,
)
from harness.benchmarks.workloads import PIPELINES, Workload, load_workload
from tritonkit.build import ReferencePipeline
from tritonkit.repository import read_config
from tritonkit.tuning import (
    BINARY_NAME,
    UNSTABLE_OUTPUT,
    PerfAnalyzer,
    find_perf_analyzer,
    parse_csv,
    write_input_data,
    write_input_rows,
)

log = logging.getLogger(__name__)

DEFAULT_DIVERGENCE_FACTOR = 2.0
_OUTPUT_TAIL_LINES = 30


# --------------------------------------------------------------------------- the binary


# --------------------------------------------------------------------------- input data


# --------------------------------------------------------------------------- the command


def host_port(url: str, protocol: Protocol) -> str:
    """`host:port` for perf_analyzer's -u from `grpc://h:p`, `http://h:p` or `h:p`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        rest = url
    elif (scheme == "grpc") != (protocol is Protocol.GRPC) or scheme not in ("grpc", "http"):
        raise PerfAnalyzerError(f"URL {url!r} does not match the scenario's protocol "
                                f"{protocol.value}")
    rest = rest.rstrip("/")
    if not rest or "/" in rest:
        raise PerfAnalyzerError(f"URL {url!r} must be host:port (optionally with a scheme)")
    return rest


def perf_command(
    scenario: PerfScenario, url: str, *, input_data: Path, csv_path: Path,
    binary: Path | str = BINARY_NAME, load_range: LoadRange | None = None,
) -> list[str]:
    """perf_analyzer's argument list for one sweep of `scenario`.

    `load_range` defaults to the scenario's only sweep (see `PerfScenario.load_ranges`).
    `--collect-metrics` stays off: it scrapes GPU utilization and memory (no GPU here).
    """
    if load_range is None:
        ranges = scenario.load_ranges()
        if len(ranges) != 1:
            raise PerfAnalyzerError(
                f"scenario {scenario.name!r} sweeps {len(ranges)} ranges; pass load_range")
        load_range = ranges[0]
    load_flag = ("--concurrency-range" if scenario.load_mode is LoadMode.CONCURRENCY
                 else "--request-rate-range")
    command = [
        str(binary),
        "-m", scenario.model,
        "-u", host_port(url, scenario.protocol),
        "-i", scenario.protocol.value,
        "-b", str(scenario.batch_images),
        "--input-data", str(input_data),
        load_flag, load_range.flag_value(),
        "--measurement-mode", scenario.measurement_mode.value,
    ]
    if scenario.measurement_mode is MeasurementMode.TIME_WINDOWS:
        command += ["--measurement-interval", str(scenario.measurement_interval_ms)]
    else:
        command += ["--measurement-request-count", str(scenario.measurement_request_count)]
    command += [
        "--stability-percentage", f"{float(scenario.stability_percentage):g}",
        "--max-trials", str(scenario.max_trials),
    ]
    if scenario.stability_percentile is not None:
        command += ["--percentile", str(scenario.stability_percentile)]
    command += [
        "--shared-memory", scenario.shared_memory.value,
        "-f", str(csv_path),
        "--verbose-csv",
    ]
    return command


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, kw_only=True)
class LatencyBreakdown:
    """perf_analyzer's average latency breakdown of one point, in microseconds."""

    client_send_us: float
    network_server_send_recv_us: float
    server_queue_us: float
    server_compute_input_us: float
    server_compute_infer_us: float
    server_compute_output_us: float
    client_recv_us: float

    @property
    def server_total_us(self) -> float:
        return (self.server_queue_us + self.server_compute_input_us
                + self.server_compute_infer_us + self.server_compute_output_us)


@dataclass(frozen=True, kw_only=True)
class ServerLatency:
    """The server-side statistics of the profiled model (perf_analyzer's "Server:" section)."""

    request_latency_us: float
    overhead_us: float
    queue_us: float
    compute_us: float  # input + infer + output (for an ensemble: summed over its steps)
    inference_count: int
    execution_count: int


@dataclass(frozen=True, kw_only=True)
class StepLatency:
    """One composing model of an ensemble at one load level ("Composing models:" section)."""

    scenario: str
    ensemble: str
    step: str
    load: float
    request_latency_us: float
    overhead_us: float
    queue_us: float
    compute_input_us: float
    compute_infer_us: float
    compute_output_us: float
    inference_count: int
    execution_count: int
    avg_batch_rows: float  # inferences per execution: how well dynamic batching batched


@dataclass(frozen=True, kw_only=True)
class PerfPoint:
    """One concurrency level (or request rate) of one scenario."""

    scenario: str
    model: str
    protocol: Protocol
    load_mode: LoadMode
    load: float  # the concurrency, or the request rate in requests/s
    batch_images: int
    throughput_infer_s: float  # inferences (images) per second
    requests_per_s: float
    latency_avg_us: float
    latency_p50_us: float
    latency_p90_us: float
    latency_p95_us: float
    latency_p99_us: float
    breakdown: LatencyBreakdown
    server: ServerLatency | None
    delayed_requests_percent: float  # request-rate mode: requests perf_analyzer sent late
    client_server_ratio: float  # divergence(): client avg latency / server-side latency
    diverged: bool  # client_server_ratio > divergence_factor


def server_side_latency_us(breakdown: LatencyBreakdown, server: ServerLatency | None) -> float:
    """The server's own average request latency (see the module docstring)."""
    if server is not None and server.request_latency_us > 0:
        return server.request_latency_us
    return breakdown.server_total_us


def _ratio(client_us: float, server_us: float) -> float:
    return client_us / server_us if server_us > 0 else math.inf


def divergence(point: PerfPoint) -> float:
    """Client average latency over server-side request latency (1.0: nothing outside)."""
    return _ratio(point.latency_avg_us, server_side_latency_us(point.breakdown, point.server))


# --- CSV ---

# --- the printed report ---

_BLOCK_START = re.compile(
    r"^Request (?:concurrency: (?P<concurrency>\d+)|Rate: (?P<rate>[\d.]+) inference)")
_SUMMARY_START = "Inferences/Second vs. Client"
_LATENCY_LINE = re.compile(r"Avg request latency: (?P<total>\d+) usec \((?P<parts>[^)]*)\)")
_LATENCY_PART = re.compile(r"([a-z][a-z ]*?) (\d+) usec")
_COMPOSING_MODEL = re.compile(r"^\s*(?P<name>[A-Za-z0-9][\w\-]*), version: (?P<version>\S+)\s*$")
_COUNT_LINE = re.compile(r"^\s*(Inference|Execution) count: (\d+)")
_DELAYED = re.compile(r"([\d.]+)% of the requests were delayed")


@dataclass(frozen=True, kw_only=True)
class _Latency:
    total_us: float
    parts: Mapping[str, float]
    inference_count: int
    execution_count: int


@dataclass(frozen=True, kw_only=True)
class ReportBlock:
    """What perf_analyzer printed for one load level."""

    load: float
    server: ServerLatency | None
    composing: tuple[tuple[str, _Latency], ...]
    delayed_requests_percent: float


def _read_latency(lines: Sequence[str], start: int) -> tuple[_Latency | None, int]:
    """The counts and the latency line of the section starting at `start`."""
    counts: dict[str, int] = {}
    for i in range(start, len(lines)):
        count = _COUNT_LINE.match(lines[i])
        if count:
            counts[count.group(1)] = int(count.group(2))
            continue
        match = _LATENCY_LINE.search(lines[i])
        if match:
            parts = {name.strip(): float(v) for name, v in _LATENCY_PART.findall(
                match.group("parts"))}
            return _Latency(total_us=float(match.group("total")), parts=parts,
                            inference_count=counts.get("Inference", 0),
                            execution_count=counts.get("Execution", 0)), i + 1
        if _COMPOSING_MODEL.match(lines[i]) or lines[i].strip() == "Composing models:":
            break
    return None, start


def _server_latency(latency: _Latency) -> ServerLatency:
    parts = latency.parts
    compute = parts.get("compute", sum(v for k, v in parts.items() if k.startswith("compute")))
    return ServerLatency(request_latency_us=latency.total_us,
                         overhead_us=parts.get("overhead", 0.0), queue_us=parts.get("queue", 0.0),
                         compute_us=compute, inference_count=latency.inference_count,
                         execution_count=latency.execution_count)


def _parse_block(load: float, lines: Sequence[str]) -> ReportBlock:
    server: ServerLatency | None = None
    composing: list[tuple[str, _Latency]] = []
    delayed = 0.0
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        delayed_match = _DELAYED.search(line)
        if delayed_match:
            delayed = float(delayed_match.group(1))
        if stripped == "Server:":
            latency, i = _read_latency(lines, i + 1)
            if latency is not None:
                server = _server_latency(latency)
            continue
        model = _COMPOSING_MODEL.match(line)
        if model and server is not None:
            latency, i = _read_latency(lines, i + 1)
            if latency is not None:
                composing.append((model.group("name"), latency))
            continue
        i += 1
    return ReportBlock(load=load, server=server, composing=tuple(composing),
                       delayed_requests_percent=delayed)


def parse_report(text: str) -> list[ReportBlock]:
    """The per-load sections perf_analyzer prints to stdout (server and composing stats)."""
    blocks: list[ReportBlock] = []
    current: tuple[float, list[str]] | None = None
    for line in text.splitlines():
        start = _BLOCK_START.match(line)
        if start or line.startswith(_SUMMARY_START):
            if current is not None:
                blocks.append(_parse_block(current[0], current[1]))
            current = None
            if start:
                value = start.group("concurrency") or start.group("rate")
                current = (float(value), [])
            continue
        if current is not None:
            current[1].append(line)
    if current is not None:
        blocks.append(_parse_block(current[0], current[1]))
    return blocks


def composing_stats(report: str, *, scenario: PerfScenario) -> list[StepLatency]:
    """Each composing model of an ensemble at each load level, from perf_analyzer's output."""
    steps: list[StepLatency] = []
    for block in parse_report(report):
        for name, latency in block.composing:
            parts = latency.parts
            steps.append(StepLatency(
                scenario=scenario.name, ensemble=scenario.model, step=name, load=block.load,
                request_latency_us=latency.total_us,
                overhead_us=parts.get("overhead", 0.0), queue_us=parts.get("queue", 0.0),
                compute_input_us=parts.get("compute input", 0.0),
                compute_infer_us=parts.get("compute infer", 0.0),
                compute_output_us=parts.get("compute output", 0.0),
                inference_count=latency.inference_count,
                execution_count=latency.execution_count,
                avg_batch_rows=(latency.inference_count / latency.execution_count
                                if latency.execution_count else 0.0),
            ))
    return steps


def build_points(scenario: PerfScenario, csv_text: str, report: str, *,
                 divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR,
                 source: str = "perf_analyzer CSV") -> list[PerfPoint]:
    """PerfPoints from perf_analyzer's CSV and its printed report (matched by load level)."""
    blocks = {block.load: block for block in parse_report(report)}
    points: list[PerfPoint] = []
    for row in parse_csv(csv_text, source=source):
        if row.load_mode is not scenario.load_mode:
            raise PerfAnalyzerError(f"{source}: a {row.load_mode.value} sweep, but scenario "
                                    f"{scenario.name!r} sweeps {scenario.load_mode.value}")
        v = row.values
        breakdown = LatencyBreakdown(
            client_send_us=v["client_send_us"],
            network_server_send_recv_us=v["network_server_send_recv_us"],
            server_queue_us=v["server_queue_us"],
            server_compute_input_us=v["server_compute_input_us"],
            server_compute_infer_us=v["server_compute_infer_us"],
            server_compute_output_us=v["server_compute_output_us"],
            client_recv_us=v["client_recv_us"],
        )
        block = next((b for load, b in blocks.items() if math.isclose(load, row.load)), None)
        server = block.server if block is not None else None
        if block is None:
            log.warning("%s: no printed server statistics for load %g; the divergence uses "
                        "the CSV's server columns", scenario.name, row.load)
        ratio = _ratio(v["avg"], server_side_latency_us(breakdown, server))
        points.append(PerfPoint(
            scenario=scenario.name, model=scenario.model, protocol=scenario.protocol,
            load_mode=row.load_mode, load=row.load, batch_images=scenario.batch_images,
            throughput_infer_s=v["throughput"],
            requests_per_s=v["throughput"] / scenario.batch_images,
            latency_avg_us=v["avg"], latency_p50_us=v["p50"], latency_p90_us=v["p90"],
            latency_p95_us=v["p95"], latency_p99_us=v["p99"],
            breakdown=breakdown, server=server,
            delayed_requests_percent=block.delayed_requests_percent if block else 0.0,
            client_server_ratio=ratio, diverged=ratio > divergence_factor,
        ))
    return points


# --------------------------------------------------------------------------- running




def _tail(text: str, lines: int = _OUTPUT_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _unstable_hint(output: str) -> str:
    if UNSTABLE_OUTPUT not in output:
        return ""
    return ("\nhint: the measurement never stabilized; raise measurement_interval_ms, "
            "stability_percentage or max_trials, or set stability_percentile, in the scenario "
            "file")


def _failure(scenario: PerfScenario, command: Sequence[str], detail: str, output: str) -> str:
    return (f"perf_analyzer {detail} for scenario {scenario.name!r} (model {scenario.model!r})"
            f"\ncommand: {' '.join(command)}\n--- last lines of its output ---\n"
            f"{_tail(output)}{_unstable_hint(output)}")


def _run_sweep(analyzer: PerfAnalyzer, scenario: PerfScenario, url: str, *, input_data: Path,
               csv_path: Path, load_range: LoadRange) -> tuple[str, str]:
    """(CSV text, "" if none was written; printed output) of one perf_analyzer sweep.

    perf_analyzer exits 0 when a later level fails to stabilize (that level is then missing
    from the CSV) and non-zero when the first one does; both come back as missing levels.
    """
    csv_path.unlink(missing_ok=True)
    command = perf_command(scenario, url, input_data=input_data, csv_path=csv_path,
                           binary=analyzer.binary, load_range=load_range)
    log.info("perf_analyzer: %s", " ".join(command))
    try:
        done = subprocess.run(command, env=analyzer.environment(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=scenario.timeout_s, check=False)
    except subprocess.TimeoutExpired as e:
        output = (e.stdout or b"").decode("utf-8", errors="replace")
        raise PerfAnalyzerError(_failure(scenario, command, f"ran past {scenario.timeout_s:g} s",
                                         output)) from e
    except OSError as e:
        raise PerfAnalyzerError(f"cannot run {command[0]}: {e}") from e
    output = done.stdout.decode("utf-8", errors="replace")
    if done.returncode != 0 and UNSTABLE_OUTPUT not in output:
        raise PerfAnalyzerError(_failure(scenario, command, f"exited with {done.returncode}",
                                         output))
    text = csv_path.read_text(encoding="utf-8") if csv_path.is_file() else ""
    return text, output


def _table_lines(csv_text: str) -> tuple[str, list[str]]:
    """The header and the result rows of a perf_analyzer CSV (stops at the first blank line)."""
    lines = csv_text.splitlines()
    rows: list[str] = []
    for line in lines[1:]:
        if not line.strip():
            break
        rows.append(line)
    return (lines[0] if lines else ""), rows


def _missing(expected: Sequence[float], csv_texts: Sequence[str], source: str) -> list[float]:
    measured = [row.load for text in csv_texts if _table_lines(text)[1]
                for row in parse_csv(text, source=source)]
    return [v for v in expected if not any(math.isclose(v, m) for m in measured)]


def _merge_csv(csv_texts: Sequence[str], *, source: str) -> str:
    """One CSV of every sweep's result rows, ordered by load."""
    header = ""
    rows: list[tuple[float, str]] = []
    for text in csv_texts:
        part_header, lines = _table_lines(text)
        if not lines:
            continue
        if header and part_header != header:
            raise PerfAnalyzerError(f"{source}: sweeps wrote different CSV columns: "
                                    f"{header!r} and {part_header!r}")
        header = part_header
        rows += [(row.load, line) for row, line in zip(parse_csv(text, source=source), lines,
                                                       strict=True)]
    return "\n".join([header, *(line for _, line in sorted(rows, key=lambda r: r[0]))]) + "\n"


def run_perf_analyzer(
    scenario: PerfScenario, url: str, *, out_csv: Path, input_data: Path | None = None,
    workload: Workload | None = None, input_images: int = 64,
    analyzer: PerfAnalyzer | None = None,
    divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR,
) -> list[PerfPoint]:
    """Run every sweep of `scenario` against `url`; one PerfPoint per load level.

    Input data: `input_data` if given; else the scenario's workload (`workload`, or
    `input_images` images of `load_workload(scenario.workload)`), which fits only the
    workload's ensemble. A level that does not stabilize is measured once more on its own;
    if it fails again, PerfAnalyzerError. Writes `out_csv` (the rows of every sweep, by load;
    per-sweep `<stem>.part<i>.csv` files are merged into it) and `<stem>.log` (what
    perf_analyzer printed: server-side and composing-model statistics).
    """
    analyzer = analyzer or find_perf_analyzer()
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    if input_data is None:
        if scenario.model != PIPELINES[scenario.workload]:
            raise PerfAnalyzerError(
                f"scenario {scenario.name!r} profiles {scenario.model!r}, not the "
                f"{scenario.workload.value} pipeline: pass input_data with that model's real "
                "inputs (profile_pipeline derives them)")
        workload = workload or load_workload(scenario.workload, count=input_images)
        input_data = write_input_data(workload.samples(),
                                      out_csv.with_name(f"{out_csv.stem}.input.json"))
    csv_texts: list[str] = []
    reports: list[str] = []
    parts: list[Path] = []
    pending = list(scenario.load_ranges())
    missing: list[float] = []
    failed_report = ""
    for attempt in (1, 2):
        for load_range in pending:
            part = out_csv.with_name(f"{out_csv.stem}.part{len(csv_texts)}{out_csv.suffix}")
            parts.append(part)
            text, report = _run_sweep(analyzer, scenario, url, input_data=input_data,
                                      csv_path=part, load_range=load_range)
            csv_texts.append(text)
            reports.append(report)
            if _missing(load_range.values(), [text], str(part)):
                failed_report = report
        missing = _missing(scenario.load_values, csv_texts, str(out_csv))
        if not missing:
            break
        if attempt == 1:
            log.warning("%s: no stable result at %s %s; measuring again, one level at a "
                        "time", scenario.name, scenario.load_mode.value,
                        ", ".join(f"{v:g}" for v in missing))
            pending = [LoadRange(start=v, end=v, step=1.0) for v in missing]
    report = "\n".join(reports)
    out_csv.with_name(f"{out_csv.stem}.log").write_text(report, encoding="utf-8")
    if missing:
        raise PerfAnalyzerError(
            f"perf_analyzer found no stable measurement for scenario {scenario.name!r} (model "
            f"{scenario.model!r}) at {scenario.load_mode.value} "
            f"{', '.join(f'{v:g}' for v in missing)}, twice; its output is in "
            f"{out_csv.with_name(out_csv.stem + '.log')}\n--- last lines of the last failed "
            f"sweep ---\n{_tail(failed_report)}{_unstable_hint(report)}")
    out_csv.write_text(_merge_csv(csv_texts, source=str(out_csv)), encoding="utf-8")
    for part in parts:
        part.unlink(missing_ok=True)
    points = build_points(scenario, out_csv.read_text(encoding="utf-8"), report,
                          divergence_factor=divergence_factor, source=str(out_csv))
    for p in points:
        log.info("%s %s=%g: %.1f infer/s, p50 %.0f us, p99 %.0f us, client/server %.2f%s",
                 scenario.name, p.load_mode.value, p.load, p.throughput_infer_s,
                 p.latency_p50_us, p.latency_p99_us, p.client_server_ratio,
                 " (diverged)" if p.diverged else "")
    return points


# --------------------------------------------------------------------------- per-step profile


@dataclass(frozen=True, kw_only=True)
class StepInputs:
    """The real inputs one composing model receives inside a pipeline.

    `rows` holds one batch-1 request per row (tensors without the batch axis); rows captured
    one at a time may differ in shape (token rows of their own length)."""

    model: str
    rows: tuple[Mapping[str, np.ndarray], ...]

    @property
    def ragged(self) -> bool:
        """Whether some input's shape differs between rows."""
        first = self.rows[0]
        return any(row[name].shape != first[name].shape for row in self.rows for name in first)

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        """The rows stacked along axis 0 (rows must share their shapes)."""
        if self.ragged:
            raise PerfAnalyzerError(f"{self.model}: rows differ in shape; use `rows`")
        return {name: np.stack([row[name] for row in self.rows])
                for name in self.rows[0]}

    def write_input_data(self, path: Path) -> Path:
        """perf_analyzer's `--input-data` JSON of these rows (one entry per row)."""
        return write_input_rows(self.rows, path)


@dataclass(frozen=True, kw_only=True)
class PipelineProfile:
    """An ensemble under load, its steps as seen inside it, and each step loaded alone."""

    pipeline: str
    ensemble: tuple[PerfPoint, ...]
    in_ensemble: tuple[StepLatency, ...]  # composing-model statistics of the ensemble runs
    steps: tuple[PerfPoint, ...]  # each composing model profiled on its own


def _config_dtype(repository: Path, model: str, name: str) -> np.dtype[Any]:
    config = read_config(repository / model / "config.pbtxt")
    for tensor in config.input:
        if tensor.name == name:
            triton_type = model_config_pb2.DataType.Name(tensor.data_type).removeprefix("TYPE_")
            if triton_type == "STRING":
                triton_type = "BYTES"
            return np.dtype(triton_to_np_dtype(triton_type))
    raise PerfAnalyzerError(f"{model}: config.pbtxt has no input {name!r}")


def has_variable_dims(repository: Path, pipeline: str) -> bool:
    """Whether an input of a step of `pipeline` has a variable dim (-1) besides the batch."""
    ensemble = read_config(repository / pipeline / "config.pbtxt")
    for step in ensemble.ensemble_scheduling.step:
        config = read_config(repository / step.model_name / "config.pbtxt")
        if any(d < 0 for tensor in config.input for d in tensor.dims):
            return True
    return False


def _capture(repository: Path, reference: ReferencePipeline,
             inputs: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Each step's feeds for one run of the pipeline over `inputs` (one batch)."""
    tensors: dict[str, np.ndarray] = dict(inputs)
    captured: list[dict[str, np.ndarray]] = []
    for step, run in reference.steps:
        feeds: dict[str, np.ndarray] = {}
        for model_input, tensor in step.input_map.items():
            value = np.asarray(tensors[tensor])
            expected = _config_dtype(repository, step.model_name, model_input)
            if expected not in (np.dtype(np.object_), value.dtype):
                value = value.astype(expected)
            feeds[model_input] = value
        captured.append(feeds)
        outputs = run(feeds)
        for model_output, tensor in step.output_map.items():
            tensors[tensor] = outputs[model_output]
    return captured


def step_inputs(repository: Path, pipeline: str, inputs: Mapping[str, np.ndarray], *,
                one_row_at_a_time: bool = False) -> list[StepInputs]:
    """Run `pipeline` in-process over `inputs` and capture what each step receives.

    The tensors come from the same step functions and ONNX models the server runs
    (`ReferencePipeline`), cast to the dtype each model's config.pbtxt declares. By default
    the pipeline runs once over all rows (rows of a step share the batch's padding, as rows of
    one request do); `one_row_at_a_time` runs it per row, as a request of one row sees it.
    """
    reference = ReferencePipeline(repository, pipeline)
    rows = len(next(iter(inputs.values())))
    if one_row_at_a_time:
        runs = [_capture(repository, reference, {k: v[i:i + 1] for k, v in inputs.items()})
                for i in range(rows)]
    else:
        runs = [_capture(repository, reference, inputs)]
    captured: list[StepInputs] = []
    for index, (step, _) in enumerate(reference.steps):
        per_row = tuple({name: tensor[i] for name, tensor in run[index].items()}
                        for run in runs for i in range(len(next(iter(run[index].values())))))
        captured.append(StepInputs(model=step.model_name, rows=per_row))
    return captured


def profile_pipeline(
    repository: Path, scenario: PerfScenario, url: str, *, out_dir: Path,
    workload: Workload | None = None, input_images: int = 64, step_samples: int = 32,
    analyzer: PerfAnalyzer | None = None,
    divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR,
) -> PipelineProfile:
    """Profile the ensemble `scenario.model` of `repository`, then each of its steps alone.

    Every run uses `scenario`'s load and windows. The ensemble gets the workload's encoded
    items; each step gets its real inputs from `step_inputs` (the first `step_samples` rows,
    at least one request's worth): decoded images are large, so fewer rows keep the input
    JSON small. A pipeline with variable-length step inputs (token rows) profiled at one row
    per request gets its rows captured one at a time, each at its own length. Files land in
    `out_dir` as `<scenario>.<model>.{csv,log,input.json}`.
    """
    analyzer = analyzer or find_perf_analyzer()
    workload = workload or load_workload(scenario.workload, count=input_images)
    pipeline = scenario.model
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = workload.samples()
    base = f"{scenario.name}.{pipeline}"
    ensemble_points = run_perf_analyzer(
        scenario, url, out_csv=out_dir / f"{base}.csv",
        input_data=write_input_data(samples, out_dir / f"{base}.input.json"),
        analyzer=analyzer, divergence_factor=divergence_factor)
    report = (out_dir / f"{base}.log").read_text(encoding="utf-8")
    in_ensemble = composing_stats(report, scenario=scenario)
    rows = max(step_samples, scenario.batch_images)
    one_row = scenario.batch_images == 1 and has_variable_dims(repository, pipeline)
    step_points: list[PerfPoint] = []
    for captured in step_inputs(repository, pipeline, {k: v[:rows] for k, v in samples.items()},
                                one_row_at_a_time=one_row):
        step_scenario = dataclasses.replace(scenario, name=f"{scenario.name}.{captured.model}",
                                            model=captured.model)
        base = step_scenario.name
        data = captured.write_input_data(out_dir / f"{base}.input.json")
        log.info("profiling step %s alone with inputs %s (%d rows)", captured.model, ", ".join(
            f"{k}: {np_to_triton_dtype(v.dtype)} {list(v.shape)}"
            for k, v in captured.rows[0].items()), len(captured.rows))
        step_points += run_perf_analyzer(step_scenario, url, out_csv=out_dir / f"{base}.csv",
                                         input_data=data, analyzer=analyzer,
                                         divergence_factor=divergence_factor)
    return PipelineProfile(pipeline=pipeline, ensemble=tuple(ensemble_points),
                           in_ensemble=tuple(in_ensemble), steps=tuple(step_points))
