"""Drive Triton's perf_analyzer: find it, write its `--input-data` from real samples, read its CSV.

- `find_perf_analyzer()` locates the binary of the tritonclient wheel and the two native
  libraries it needs (libcudart.so.12 from nvidia-cuda-runtime-cu12, libb64.so.0d).
- `write_input_data(samples, path)`: one `"data"` entry per row (a batch-1 tensor); BYTES
  elements as 4-byte little-endian length + bytes (perf_analyzer's input_data.md), numeric
  tensors as little-endian raw bytes. `write_input_rows` keeps each entry's own shape.
- `parse_csv(text)` reads the `-f ... --verbose-csv` CSV by header names.
- `measure_concurrency(...)` runs one concurrency sweep and returns throughput and latency
  percentiles per level (what `tritonkit tune` measures).
"""

from __future__ import annotations

import base64
import csv
import ctypes
import importlib.util
import io
import json
import logging
import os
import shutil
import struct
import subprocess
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from tritonkit.errors import PerfAnalyzerError

log = logging.getLogger(__name__)

BINARY_NAME = "perf_analyzer"
CUDART_LIBRARY = "libcudart.so.12"
B64_LIBRARY = "libb64.so.0d"
SETUP_HINT = "run `make setup`"


class LoadMode(str, Enum):
    CONCURRENCY = "concurrency"
    REQUEST_RATE = "request_rate"


@dataclass(frozen=True, kw_only=True)
class PerfAnalyzer:
    """The perf_analyzer binary and the library directories it must find at run time."""

    binary: Path
    library_dirs: tuple[Path, ...] = ()

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (default: this process's environment) with LD_LIBRARY_PATH extended."""
        env = dict(os.environ if base is None else base)
        parts = [str(d) for d in self.library_dirs]
        if env.get("LD_LIBRARY_PATH"):
            parts.append(env["LD_LIBRARY_PATH"])
        if parts:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(parts)
        return env


def _cudart_dir() -> Path:
    try:
        spec = importlib.util.find_spec("nvidia.cuda_runtime")
    except ModuleNotFoundError:
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        lib_dir = Path(location) / "lib"
        if (lib_dir / CUDART_LIBRARY).is_file():
            return lib_dir
    raise PerfAnalyzerError(
        f"perf_analyzer needs {CUDART_LIBRARY} from the pip package nvidia-cuda-runtime-cu12 "
        f"(nvidia/cuda_runtime/lib), which is not installed: {SETUP_HINT} (the bench extra)")


def find_perf_analyzer() -> PerfAnalyzer:
    """The virtualenv's perf_analyzer (else one on PATH) with its libraries, or a clear error."""
    candidates = [Path(sysconfig.get_path("scripts")) / BINARY_NAME]
    on_path = shutil.which(BINARY_NAME)
    if on_path:
        candidates.append(Path(on_path))
    binary = next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)
    if binary is None:
        raise PerfAnalyzerError(
            f"perf_analyzer not found (looked in {candidates[0].parent} and on PATH): "
            f"{SETUP_HINT}; the tritonclient 2.50.0 wheel installs bin/perf_analyzer")
    lib_dir = _cudart_dir()
    try:
        ctypes.CDLL(B64_LIBRARY)
    except OSError as e:
        raise PerfAnalyzerError(
            f"perf_analyzer needs {B64_LIBRARY} (Debian package libb64-0d), which cannot be "
            f"loaded: {SETUP_HINT}") from e
    return PerfAnalyzer(binary=binary, library_dirs=(lib_dir,))


def _serialize_bytes_row(row: np.ndarray) -> bytes:
    """BYTES elements in row-major order, each as uint32 little-endian length + bytes."""
    out = bytearray()
    for element in row.reshape(-1):
        blob = element if isinstance(element, bytes) else str(element).encode("utf-8")
        out += struct.pack("<I", len(blob))
        out += blob
    return bytes(out)


def tensor_entry(row: np.ndarray) -> dict[str, Any]:
    """One batch-1 tensor of perf_analyzer's input data: {"content": {"b64"}, "shape"}."""
    if row.dtype == np.object_ or row.dtype.kind in "SU":
        raw = _serialize_bytes_row(row)
    else:
        raw = np.ascontiguousarray(row, dtype=row.dtype.newbyteorder("<")).tobytes()
    return {"content": {"b64": base64.b64encode(raw).decode("ascii")},
            "shape": [int(d) for d in row.shape]}


def input_data_document(samples: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """perf_analyzer's input data: `samples[name]` holds rows along axis 0 (the batch axis)."""
    if not samples:
        raise PerfAnalyzerError("input data needs at least one tensor")
    counts = {name: len(array) for name, array in samples.items()}
    if len(set(counts.values())) != 1 or 0 in counts.values():
        raise PerfAnalyzerError(f"every input needs the same, non-zero number of rows: {counts}")
    for name, array in samples.items():
        if array.ndim < 2:
            raise PerfAnalyzerError(
                f"input {name!r}: rows need at least one dim besides the batch axis, got "
                f"shape {list(array.shape)} (a BYTES image column is [N, 1])")
    rows = next(iter(counts.values()))
    return {"data": [{name: tensor_entry(array[i]) for name, array in samples.items()}
                     for i in range(rows)]}


def write_input_data(samples: Mapping[str, np.ndarray], path: Path) -> Path:
    """Write `--input-data` JSON for `samples` (rows along axis 0) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(input_data_document(samples)), encoding="utf-8")
    rows = len(next(iter(samples.values())))
    log.debug("wrote %d input rows of %s to %s", rows, ", ".join(samples), path)
    return path


def input_rows_document(rows: Sequence[Mapping[str, np.ndarray]]) -> dict[str, Any]:
    """perf_analyzer's input data from one batch-1 request per entry (no batch axis).

    Shapes may differ between entries (e.g. token rows of their own length): each entry
    carries its own `"shape"`, which perf_analyzer uses for the variable dims. Requests of
    `-b 1` only: a larger batch needs equal shapes in the rows it joins.
    """
    if not rows:
        raise PerfAnalyzerError("input data needs at least one row")
    names = list(rows[0])
    if not names:
        raise PerfAnalyzerError("input data needs at least one tensor")
    data: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if list(row) != names:
            raise PerfAnalyzerError(f"row {i} has inputs {list(row)}, row 0 has {names}")
        for name, tensor in row.items():
            if tensor.ndim < 1:
                raise PerfAnalyzerError(f"row {i}, input {name!r}: a scalar; a row needs at "
                                        "least one dim besides the batch axis")
        data.append({name: tensor_entry(tensor) for name, tensor in row.items()})
    return {"data": data}


def write_input_rows(rows: Sequence[Mapping[str, np.ndarray]], path: Path) -> Path:
    """Write `--input-data` JSON of one batch-1 request per entry (see input_rows_document)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(input_rows_document(rows)), encoding="utf-8")
    log.debug("wrote %d input rows of %s to %s", len(rows), ", ".join(rows[0]), path)
    return path


_LOAD_COLUMNS = {"concurrency": LoadMode.CONCURRENCY, "request rate": LoadMode.REQUEST_RATE}
_CSV_FIELDS = {
    "inferences/second": "throughput",
    "client send": "client_send_us",
    "network+server send/recv": "network_server_send_recv_us",
    "server queue": "server_queue_us",
    "server compute input": "server_compute_input_us",
    "server compute infer": "server_compute_infer_us",
    "server compute output": "server_compute_output_us",
    "client recv": "client_recv_us",
    "p50 latency": "p50",
    "p90 latency": "p90",
    "p95 latency": "p95",
    "p99 latency": "p99",
}
_BREAKDOWN_FIELDS = ("client_send_us", "network_server_send_recv_us", "server_queue_us",
                     "server_compute_input_us", "server_compute_infer_us",
                     "server_compute_output_us", "client_recv_us")
_AVG_LATENCY = "avg latency"  # absent when perf_analyzer ran with --percentile


@dataclass(frozen=True, kw_only=True)
class CsvRow:
    """One row of perf_analyzer's `-f` CSV, by column meaning."""

    load_mode: LoadMode
    load: float
    values: Mapping[str, float]  # keys: the values of _CSV_FIELDS, and "avg"


def _normalize(header: str) -> str:
    return " ".join(header.strip().lower().split())


def parse_csv(text: str, *, source: str = "perf_analyzer CSV") -> list[CsvRow]:
    """Rows of a `-f ... --verbose-csv` CSV, matched by header name (column order is free)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise PerfAnalyzerError(f"{source}: empty, perf_analyzer wrote no results")
    names = [_normalize(h) for h in header]
    load_columns = [(i, _LOAD_COLUMNS[n]) for i, n in enumerate(names) if n in _LOAD_COLUMNS]
    missing = [h for h in _CSV_FIELDS if h not in names]
    if len(load_columns) != 1 or missing:
        wanted = "a Concurrency or Request Rate column" if len(load_columns) != 1 else \
            "column(s) " + ", ".join(missing)
        raise PerfAnalyzerError(f"{source}: missing {wanted} (have: {', '.join(header)}); "
                                "was it written with --verbose-csv?")
    load_index, load_mode = load_columns[0]
    index = {field: names.index(h) for h, field in _CSV_FIELDS.items()}
    avg_index = names.index(_AVG_LATENCY) if _AVG_LATENCY in names else None
    rows: list[CsvRow] = []
    for line_number, row in enumerate(reader, start=2):
        if not row or not any(cell.strip() for cell in row):
            break  # a blank line ends the table (server metrics may follow)
        try:
            values = {f: float(row[i]) for f, i in index.items()}
            # Without the column, the average is the sum of its breakdown (the parts add up
            # to perf_analyzer's "Avg latency" within rounding).
            values["avg"] = (float(row[avg_index]) if avg_index is not None
                             else sum(values[f] for f in _BREAKDOWN_FIELDS))
            rows.append(CsvRow(load_mode=load_mode, load=float(row[load_index]), values=values))
        except (IndexError, ValueError) as e:
            raise PerfAnalyzerError(f"{source}: line {line_number} is malformed: {row}") from e
    if not rows:
        raise PerfAnalyzerError(f"{source}: no result rows")
    return rows


# --------------------------------------------------------------------------- a sweep


@dataclass(frozen=True, kw_only=True)
class SweepPoint:
    """One concurrency level: inferences/s and client-side latency percentiles (ms)."""

    concurrency: int
    throughput: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True, kw_only=True)
class SweepSettings:
    """How long and how strictly each level is measured (stability judged on the median)."""

    protocol: str = "grpc"
    measurement_interval_ms: int = 1500
    stability_percentage: float = 50.0
    max_trials: int = 6
    timeout_s: float = 300.0


UNSTABLE_OUTPUT = "Failed to obtain stable measurement"  # what perf_analyzer prints
_EMPTY_WINDOW = "No valid requests recorded within time interval"


def measure_concurrency(
    analyzer: PerfAnalyzer, url: str, model: str, *, input_data: Path,
    concurrencies: Sequence[int], settings: SweepSettings = SweepSettings(), work_dir: Path,
) -> list[SweepPoint]:
    """Measure `model` at each concurrency (synchronous requests of batch 1, real inputs).

    A level that never stabilizes is left out (perf_analyzer then stops the sweep); a sweep
    with no level at all raises PerfAnalyzerError with perf_analyzer's own output.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    points: list[SweepPoint] = []
    for concurrency in concurrencies:
        csv_path = work_dir / f"{model}.c{concurrency}.csv"
        csv_path.unlink(missing_ok=True)
        command = [
            str(analyzer.binary), "-m", model, "-u", url, "-i", settings.protocol, "-b", "1",
            "--input-data", str(input_data), "--concurrency-range", str(concurrency),
            "--measurement-interval", str(settings.measurement_interval_ms),
            "--stability-percentage", f"{settings.stability_percentage:g}",
            "--max-trials", str(settings.max_trials), "--percentile", "50",
            "-f", str(csv_path), "--verbose-csv",
        ]
        log.debug("perf_analyzer: %s", " ".join(command))
        try:
            done = subprocess.run(command, env=analyzer.environment(), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=settings.timeout_s,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PerfAnalyzerError(f"perf_analyzer on {model!r} at concurrency "
                                    f"{concurrency}: {e}") from e
        output = done.stdout.decode("utf-8", errors="replace")
        if not csv_path.is_file():
            if UNSTABLE_OUTPUT in output or _EMPTY_WINDOW in output:
                log.warning("%s: concurrency %d: no stable measurement; left out:\n%s", model,
                            concurrency, "\n".join(output.strip().splitlines()[-6:]))
                continue
            tail = "\n".join(output.strip().splitlines()[-15:])
            raise PerfAnalyzerError(f"perf_analyzer on {model!r} at concurrency {concurrency} "
                                    f"exited with {done.returncode}:\n{tail}")
        for row in parse_csv(csv_path.read_text(encoding="utf-8"), source=str(csv_path)):
            points.append(SweepPoint(concurrency=int(row.load),
                                     throughput=row.values["throughput"],
                                     p50_ms=row.values["p50"] / 1000,
                                     p99_ms=row.values["p99"] / 1000))
    if not points:
        raise PerfAnalyzerError(f"perf_analyzer measured no level of {model!r} "
                                f"(concurrency {list(concurrencies)}): none stabilized")
    return points
