"""`tritonkit tune --engine model-analyzer`: Triton Model Analyzer's brute search of ONE model.

The default engine (`tune_pipeline`) searches a whole pipeline one knob at a time, measured
end to end. This engine hands one native (ONNX Runtime) model of the pipeline to NVIDIA's
Model Analyzer (`model-analyzer profile`, local launch mode, our own tritonserver and
perf_analyzer), which measures every combination of a manual grid alone (no ensemble) and
the spec's own config (`<model>_config_default`, the start). Its results come back as the
project's `Trial`s and `SweepPoint`s, scored with `score()` under the same p99 budget, so
`write_tuning_report` and `tune_and_write` work unchanged.

Model Analyzer lives in a virtualenv of its own (it needs numpy 2 and protobuf 6; ours stays
on numpy < 2): `make model-analyzer` installs it into `.venv-model-analyzer/`, and
`find_model_analyzer()` takes `$TRITONKIT_MODEL_ANALYZER`, else `model-analyzer` on PATH.

Ensembles are not profiled: Model Analyzer forces its quick (hill-climbing) search on them,
and the pipeline end to end is what the default engine measures. Model Analyzer restarts the
server for every config (~4 s each on 2 cores) and retries an unstable level with a longer
window (`MAX_AUTO_ADJUSTS` times), then ends that config's sweep.

What it measures differs from the default engine in three ways, by Model Analyzer's design:
the model alone (its inputs are the spec's warmup samples, else random data), every grid
combination (a full product, not one knob at a time), and no p50 (Model Analyzer reports
avg/p90/p95/p99; `SweepPoint.p50_ms` is NaN). Preferred batch sizes are left at the spec's
value: with them in the config, Model Analyzer's automatic search refuses to vary the batch
size, and a manual grid over lists of sizes is rarely worth its cost on a CPU.

Process hygiene: Model Analyzer starts tritonserver and perf_analyzer in sessions of their
own, so stopping its process group is not enough. Every process it starts inherits a marker
in its environment; when the run ends (or times out, or is interrupted) Model Analyzer's group
is stopped and any tritonserver or perf_analyzer still carrying the marker is killed.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tritonclient.grpc import model_config_pb2

from tritonkit.errors import NativeBuildError, ServerError, TuningError
from tritonkit.repository.config_io import read_config
from tritonkit.runtime.parameters import ORT_INTRA_OP_THREADS
from tritonkit.spec import BuildSpec, ModelSpec, Target, load_spec
from tritonkit.tuning.perf_analyzer import PerfAnalyzer, SweepPoint, find_perf_analyzer
from tritonkit.tuning.search import (
    Knob,
    KnobValue,
    ModelSpace,
    SearchResult,
    Settings,
    Trial,
    format_value,
    score,
)
from tritonkit.tuning.session import (
    TuningRequest,
    TuningResult,
    overlay_for,
    restrict,
    search_space,
)

log = logging.getLogger(__name__)

ENV_VAR = "TRITONKIT_MODEL_ANALYZER"
EXECUTABLE = "model-analyzer"
VERSION = "1.58.0"  # tuning/model-analyzer-requirements.txt pins the same
INSTALL_HINT = (
    f"install it with `make model-analyzer` (triton-model-analyzer=={VERSION} in "
    ".venv-model-analyzer/, a virtualenv of its own: it needs numpy 2 and protobuf 6) and "
    f"set {ENV_VAR} to its bin/{EXECUTABLE} (the Makefile exports it), or put "
    f"`{EXECUTABLE}` on PATH")
MARKER_VAR = "TRITONKIT_MODEL_ANALYZER_RUN"  # in the environment of everything it starts
GRID_KNOBS = (Knob.INSTANCE_COUNT, Knob.INTRA_OP_THREADS, Knob.MAX_QUEUE_DELAY_US)
PREFERRED_REASON = "left at the spec's value by the Model Analyzer engine"
# perf_analyzer's windows as the default engine's, judged less strictly: Model Analyzer judges
# stability on the average latency (no --percentile), which a single batcher stall on a loaded
# 2-core machine moves by more than 25 % (measured: it never stabilized at 25).
STABILITY_PERCENTAGE = 50.0
MAX_AUTO_ADJUSTS = 2  # Model Analyzer's retries with a longer window after an unstable level
INPUT_ROWS = 256  # rows of warmup samples given to perf_analyzer
CSV_NAME = "metrics-model-inference.csv"
_DEFAULT_VARIANT = "_config_default"
_STOP_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------- finding it


def find_model_analyzer() -> Path:
    """`$TRITONKIT_MODEL_ANALYZER`, else `model-analyzer` on PATH; TuningError otherwise."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        path = Path(configured).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise TuningError(f"{ENV_VAR}={configured} is not an executable file: {INSTALL_HINT}")
    on_path = shutil.which(EXECUTABLE)
    if on_path:
        return Path(on_path)
    raise TuningError(f"Model Analyzer not found ({ENV_VAR} is unset and no `{EXECUTABLE}` "
                      f"is on PATH): {INSTALL_HINT}")


# --------------------------------------------------------------------------- the grid


def _ints(knob: Knob, values: Sequence[KnobValue]) -> tuple[int, ...]:
    ints = tuple(dict.fromkeys(v for v in values if isinstance(v, int)))
    if len(ints) != len(set(values)):
        raise TuningError(f"{knob.value}: expected whole numbers, got {list(values)}")
    return ints


def model_grid(space: ModelSpace,
               grid: Mapping[Knob, Sequence[int]] | None = None) -> dict[Knob, tuple[int, ...]]:
    """The values Model Analyzer tries per knob: `space.choices` of the grid knobs, with the
    entries of `grid` replacing them (for a smaller search)."""
    values = {k: _ints(k, space.choices[k]) for k in GRID_KNOBS if k in space.choices}
    for name, chosen in (grid or {}).items():
        knob = Knob(name)
        if knob not in GRID_KNOBS:
            raise TuningError(f"the Model Analyzer engine searches "
                              f"{', '.join(k.value for k in GRID_KNOBS)}; not {knob.value}")
        if knob not in values:
            why = space.fixed.get(knob, "the model has no such setting")
            raise TuningError(f"{space.model}: {knob.value} is not searched ({why})")
        ints = _ints(knob, chosen)
        lowest = 0 if knob is Knob.MAX_QUEUE_DELAY_US else 1
        if not ints or min(ints) < lowest:
            raise TuningError(f"{space.model}.{knob.value}: values must be >= {lowest}, "
                              f"got {list(chosen)}")
        values[knob] = ints
    return values


def grid_size(values: Mapping[Knob, Sequence[int]]) -> int:
    return math.prod(len(v) for v in values.values())


def model_config_parameters(values: Mapping[Knob, Sequence[int]], *,
                            instance_kind: str) -> dict[str, Any]:
    """Model Analyzer's `model_config_parameters` (manual search) for the grid: a list of
    values is swept; nested keys are merged into the model's own config."""
    params: dict[str, Any] = {}
    if Knob.INSTANCE_COUNT in values:
        params["instance_group"] = [{"kind": instance_kind,
                                     "count": list(values[Knob.INSTANCE_COUNT])}]
    if Knob.MAX_QUEUE_DELAY_US in values:
        params["dynamic_batching"] = {
            "max_queue_delay_microseconds": list(values[Knob.MAX_QUEUE_DELAY_US])}
    if Knob.INTRA_OP_THREADS in values:
        params["parameters"] = {ORT_INTRA_OP_THREADS: {
            "string_value": [str(v) for v in values[Knob.INTRA_OP_THREADS]]}}
    return params


@dataclass(frozen=True, kw_only=True)
class AnalyzerSetup:
    """Where one Model Analyzer run reads and writes, and how it measures."""

    repository: Path  # the built repository (Model Analyzer's model_repository)
    work_dir: Path  # config, wrappers, logs, output repository and export
    server_wrapper: Path
    perf_analyzer_wrapper: Path
    backend_dir: Path
    ports: tuple[int, int, int]  # http, grpc, metrics
    concurrencies: tuple[int, ...]
    measurement_interval_ms: int
    max_trials: int
    input_data: Path | None  # perf_analyzer --input-data; None: random data
    stability_percentage: float = STABILITY_PERCENTAGE
    max_auto_adjusts: int = MAX_AUTO_ADJUSTS
    perf_analyzer_timeout_s: int = 300

    @property
    def output_repository(self) -> Path:
        return self.work_dir / "output_repository"

    @property
    def export_path(self) -> Path:
        return self.work_dir / "export"

    @property
    def results_csv(self) -> Path:
        return self.export_path / "results" / CSV_NAME


def analyzer_config(setup: AnalyzerSetup, model: str,
                    parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The `model-analyzer profile -f` YAML document of a manual brute search of `model`."""
    http, grpc, metrics = setup.ports
    perf_flags: dict[str, Any] = {
        "measurement-mode": "time_windows",
        "measurement-interval": setup.measurement_interval_ms,
        "stability-percentage": setup.stability_percentage,
        "max-trials": setup.max_trials,
    }
    if setup.input_data is not None:
        perf_flags["input-data"] = str(setup.input_data)
    return {
        "model_repository": str(setup.repository),
        "output_model_repository_path": str(setup.output_repository),
        "override_output_model_repository": True,
        "export_path": str(setup.export_path),
        "checkpoint_directory": str(setup.export_path / "checkpoints"),
        "triton_launch_mode": "local",
        "triton_server_path": str(setup.server_wrapper),
        "perf_analyzer_path": str(setup.perf_analyzer_wrapper),
        "triton_output_path": str(setup.work_dir / "tritonserver.log"),
        "perf_output": True,
        "perf_output_path": str(setup.work_dir / "perf_analyzer.log"),
        "triton_http_endpoint": f"127.0.0.1:{http}",
        "triton_grpc_endpoint": f"127.0.0.1:{grpc}",
        "triton_metrics_url": f"http://127.0.0.1:{metrics}/metrics",
        "triton_server_flags": {
            "backend_directory": str(setup.backend_dir),
            "http_address": "127.0.0.1", "http_port": http,
            "grpc_address": "127.0.0.1", "grpc_port": grpc,
            "metrics_address": "127.0.0.1", "metrics_port": metrics,
        },
        "client_protocol": "grpc",
        "perf_analyzer_flags": perf_flags,
        "perf_analyzer_max_auto_adjusts": setup.max_auto_adjusts,
        "perf_analyzer_timeout": setup.perf_analyzer_timeout_s,
        "run_config_search_mode": "brute",
        "run_config_search_disable": True,  # manual: exactly the grid (and the default)
        "collect_cpu_metrics": False,  # its sampling costs CPU the model needs (2 cores)
        "skip_detailed_reports": True,  # the summary writes the CSV; the details re-measure
        "profile_models": {
            model: {
                "cpu_only": True,
                "parameters": {"concurrency": list(setup.concurrencies), "batch_sizes": [1]},
                "model_config_parameters": dict(parameters),
            },
        },
    }


# --------------------------------------------------------------------------- the results


_MODEL = "model"
_VARIANT = "model config path"
_CONCURRENCY = "concurrency"
_BATCH = "batch"
_THROUGHPUT = "throughput (infer/sec)"
_P99 = "p99 latency (ms)"


def _normalize(header: str) -> str:
    return " ".join(header.strip().lower().split())


def parse_inference_csv(text: str, *, model: str,
                        source: str = CSV_NAME) -> dict[str, list[SweepPoint]]:
    """Points per model variant of `metrics-model-inference.csv` (columns by header name),
    rows of batch 1 of `model` only, sorted by concurrency. A level measured twice (Model
    Analyzer re-measures some for its reports) keeps its first row."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise TuningError(f"{source}: empty; Model Analyzer wrote no results")
    names = [_normalize(h) for h in header]
    missing = [n for n in (_MODEL, _VARIANT, _CONCURRENCY, _THROUGHPUT, _P99) if n not in names]
    if missing:
        raise TuningError(f"{source}: missing column(s) {', '.join(missing)} "
                          f"(have: {', '.join(header)})")
    col = {n: names.index(n) for n in (_MODEL, _VARIANT, _CONCURRENCY, _THROUGHPUT, _P99)}
    batch_col = names.index(_BATCH) if _BATCH in names else None
    variants: dict[str, dict[int, SweepPoint]] = {}
    for line_number, row in enumerate(reader, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        try:
            if row[col[_MODEL]].strip() != model:
                continue
            if batch_col is not None and int(row[batch_col]) != 1:
                continue
            variant = row[col[_VARIANT]].strip()
            concurrency = int(float(row[col[_CONCURRENCY]]))
            point = SweepPoint(concurrency=concurrency,
                               throughput=float(row[col[_THROUGHPUT]]),
                               p50_ms=math.nan,  # Model Analyzer reports no p50
                               p99_ms=float(row[col[_P99]]))
        except (IndexError, ValueError) as e:
            raise TuningError(f"{source}: line {line_number} is malformed: {row}") from e
        levels = variants.setdefault(variant, {})
        if concurrency in levels:
            log.warning("%s: %s measured twice at concurrency %d; keeping the first row",
                        source, variant, concurrency)
            continue
        levels[concurrency] = point
    return {v: [levels[c] for c in sorted(levels)] for v, levels in variants.items()}


def variant_knobs(config_path: Path) -> dict[Knob, KnobValue]:
    """The tuned settings of one generated model config (`<variant>/config.pbtxt`)."""
    config = read_config(config_path)
    knobs: dict[Knob, KnobValue] = {
        Knob.INSTANCE_COUNT: sum(g.count or 1 for g in config.instance_group) or 1}
    threads = config.parameters.get(ORT_INTRA_OP_THREADS)
    knobs[Knob.INTRA_OP_THREADS] = int(threads.string_value) if threads is not None else 0
    if config.HasField("dynamic_batching"):
        batching = config.dynamic_batching
        knobs[Knob.MAX_QUEUE_DELAY_US] = int(batching.max_queue_delay_microseconds)
        knobs[Knob.PREFERRED_BATCH_SIZES] = tuple(int(b) for b in batching.preferred_batch_size)
    return knobs


@dataclass(frozen=True, kw_only=True)
class GridTrial(Trial):
    """A trial of Model Analyzer's grid: several knobs may differ from the start at once."""

    label: str = ""

    def describe(self) -> str:
        return self.label or super().describe()


def _label(knobs: Mapping[Knob, KnobValue], start: Mapping[Knob, KnobValue],
           variant: str) -> str:
    moved = [f"{k.value}={format_value(v)}" for k, v in knobs.items() if start.get(k) != v]
    what = ", ".join(moved) or "the spec's settings"
    return f"{what} (Model Analyzer {variant})"


def trials_from_results(points: Mapping[str, Sequence[SweepPoint]], output_repository: Path,
                        space: ModelSpace, *, budget_p99_ms: float,
                        min_gain: float) -> SearchResult:
    """The start (`<model>_config_default`) and one trial per measured grid variant, in Model
    Analyzer's order; the chosen one is the best score, kept only when it beats the start by
    `min_gain` (as the default engine keeps a change)."""
    model = space.model
    default = model + _DEFAULT_VARIANT
    if not points.get(default):
        raise TuningError(f"Model Analyzer measured no level of {default} (the spec's "
                          f"settings); measured: {', '.join(sorted(points)) or 'nothing'}")

    def number(variant: str) -> int:
        tail = variant.rsplit("_", 1)[-1]
        return int(tail) if tail.isdigit() else -1

    trials: list[Trial] = []
    start_knobs: dict[Knob, KnobValue] = {}
    for variant in sorted(points, key=lambda v: (v != default, number(v), v)):
        measured = tuple(points[variant])
        if not measured:
            continue
        config_path = output_repository / variant / "config.pbtxt"
        if not config_path.is_file():
            raise TuningError(f"Model Analyzer's config of {variant} is missing: {config_path}")
        parsed = variant_knobs(config_path)
        knobs = {k: parsed[k] for k in space.start if k in parsed}
        settings: Settings = {model: knobs}
        trial_score = score(measured, budget_p99_ms)
        if variant == default:
            start_knobs = knobs
            trials.append(Trial(number=0, settings=settings, model="", knob=None, value=None,
                                points=measured, score=trial_score))
        else:
            trials.append(GridTrial(number=len(trials), settings=settings, model=model,
                                    knob=None, value=None, points=measured, score=trial_score,
                                    label=_label(knobs, start_knobs, variant)))
    for config_path in sorted(output_repository.glob(f"{model}_config_*/config.pbtxt")):
        variant = config_path.parent.name
        if not points.get(variant):
            knobs = variant_knobs(config_path)
            log.warning("Model Analyzer measured no level of %s (%s): left out; see "
                        "perf_analyzer_error.log in its export directory", variant,
                        _label({k: knobs[k] for k in space.start if k in knobs}, start_knobs,
                               variant))
    best = trials[0]
    for trial in trials[1:]:
        if trial.score.beats(best.score, 0.0):
            best = trial
    chosen = best if best.score.beats(trials[0].score, min_gain) else trials[0]
    marked = tuple(
        GridTrial(**{**t.__dict__, "kept": t is chosen}) if isinstance(t, GridTrial)
        else Trial(**{**t.__dict__, "kept": t is chosen}) for t in trials)
    return SearchResult(trials=marked, chosen=marked[trials.index(chosen)])


# --------------------------------------------------------------------------- running it


def _write_wrapper(path: Path, binary: Path, env: Mapping[str, str], comment: str) -> Path:
    lines = ["#!/bin/bash", f"# written by tritonkit: {comment}"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    lines.append(f'exec {shlex.quote(str(binary))} "$@"')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def _server_wrapper(work: Path) -> tuple[Path, Path, set[Path]]:
    """The tritonserver wrapper (the environment `LocalTriton` gives the server), the backend
    directory, and the executables a run may leave behind."""
    from tritonkit.server.local_triton import (  # noqa: PLC0415 - the serve extra
        InstallationKind,
        find_tritonserver,
        prepare_backend_dir,
    )
    from tritonkit.server.onnxruntime_backend import (  # noqa: PLC0415
        onnxruntime_backend_library,
    )
    from tritonkit.server.server_environment import server_environment  # noqa: PLC0415

    installation = find_tritonserver()
    backend = None
    if installation.kind is InstallationKind.WHEEL:
        try:
            backend = onnxruntime_backend_library()
        except NativeBuildError as e:
            raise TuningError(f"Triton's ONNX Runtime backend is not available for the local "
                              f"server: {e}") from e
    backend_dir = prepare_backend_dir(installation, work / "backends",
                                      onnxruntime_backend=backend)
    env = server_environment(installation, "model-analyzer", None)
    wrapper = _write_wrapper(
        work / "bin" / "tritonserver", installation.server,
        {k: env[k] for k in ("LD_LIBRARY_PATH", "PATH") if k in env},
        "the environment tritonkit's LocalTriton gives this tritonserver")
    return wrapper, backend_dir, {installation.server.resolve(),
                                  installation.python_stub.resolve()}


def _perf_analyzer_wrapper(work: Path, analyzer: PerfAnalyzer) -> Path:
    env = analyzer.environment({})
    return _write_wrapper(work / "bin" / "perf_analyzer", analyzer.binary,
                          {k: env[k] for k in ("LD_LIBRARY_PATH",) if k in env},
                          "perf_analyzer with the libraries tritonkit finds for it")


def model_input_data(model: ModelSpec, path: Path, *, rows: int = INPUT_ROWS) -> Path | None:
    """perf_analyzer input data for `model` alone, from the spec's warmup samples (.npz keyed
    by input name); None (perf_analyzer's random data) when the spec has none."""
    from tritonkit.tuning.perf_analyzer import write_input_data  # noqa: PLC0415

    if model.warmup is None:
        log.warning("%s has no warmup samples in the spec: perf_analyzer sends random data",
                    model.name)
        return None
    with np.load(model.warmup.samples, allow_pickle=False) as samples:
        columns = {name: np.asarray(samples[name])[:rows] for name in samples.files}
    return write_input_data(columns, path)


def _kill_marked(executables: set[Path], marker: str) -> list[int]:
    """SIGKILL every live process of `executables` whose environment carries `marker`."""
    from tritonkit.server.process_tree import find_processes  # noqa: PLC0415

    entry = f"{MARKER_VAR}={marker}".encode()
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    killed: list[int] = []
    while pids := find_processes(executables=executables, environ_entry=entry):
        if time.monotonic() > deadline:
            raise TuningError(f"processes {pids} of a Model Analyzer run survived SIGKILL")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            if pid not in killed:
                killed.append(pid)
        time.sleep(0.1)
    return killed


def _progress(log_path: Path, offset: int) -> int:
    """Log Model Analyzer's progress lines written since `offset`; the new offset."""
    try:
        with log_path.open("rb") as f:
            f.seek(offset)
            chunk = f.read()
    except OSError:
        return offset
    end = chunk.rfind(b"\n") + 1
    for raw in chunk[:end].decode("utf-8", errors="replace").splitlines():
        line = raw.replace("[Model Analyzer]", "").strip()
        if line.startswith(("Profiling ", "Creating model config", "Setting ", "  Setting",
                            "Profile complete")) or "ERROR" in line:
            log.info("model-analyzer: %s", line)
    return offset + end


def run_model_analyzer(executable: Path, config: Mapping[str, Any], work: Path, *,
                       leftovers: set[Path], timeout_s: float) -> Path:
    """Run `model-analyzer profile -f <work>/config.yaml` in its own session and wait; stop
    it and everything it started (found by the environment marker) on exit or timeout.
    Returns the log path."""
    from tritonkit.server.process_tree import spawn_group_leader, stop_group  # noqa: PLC0415

    config_path = work / "config.yaml"
    config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
    log_path = work / "model-analyzer.log"
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}  # its own virtualenv
    env[MARKER_VAR] = marker
    command = [str(executable), "profile", "-f", str(config_path)]
    log.info("running %s (log %s)", " ".join(command), log_path)
    with log_path.open("wb") as output:
        try:
            proc = spawn_group_leader(command, env=env, cwd=work, output=output)
        except ServerError as e:
            raise TuningError(str(e)) from e
    executables = {*leftovers, executable.resolve()}
    started = time.monotonic()
    offset = 0
    try:
        while proc.poll() is None:
            offset = _progress(log_path, offset)
            if time.monotonic() - started > timeout_s:
                raise TuningError(f"Model Analyzer ran past {timeout_s:.0f} s and was "
                                  f"stopped; log {log_path}")
            time.sleep(1.0)
        _progress(log_path, offset)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # its own handler stops its server
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        try:
            stop_group(proc, timeout_s=_STOP_TIMEOUT_S, name=EXECUTABLE)
        except ServerError as e:
            log.warning("%s", e)
        killed = _kill_marked(executables, marker)
        if killed:
            log.warning("killed processes left behind by Model Analyzer: %s", killed)
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").strip().splitlines()[-15:])
        log.warning("Model Analyzer exited with %d:\n%s", proc.returncode, tail)
    return log_path


# --------------------------------------------------------------------------- the entry point


def _native_model(spec: BuildSpec, pipeline: str, model: str,
                  spaces: Sequence[ModelSpace]) -> tuple[ModelSpec, ModelSpace]:
    by_name = {s.model: s for s in spaces}
    if model not in by_name:
        raise TuningError(f"pipeline {pipeline!r} has no model {model!r} (its models: "
                          f"{', '.join(by_name)})")
    spec_model = next((m for m in spec.models if m.name == model), None)
    if spec_model is None:
        raise TuningError(f"{model!r} is a Python step; the Model Analyzer engine profiles "
                          "native (ONNX Runtime) models")
    return spec_model, by_name[model]


def tune_model_with_model_analyzer(
    request: TuningRequest, model: str, *, target: Target = Target.LOCAL,
    model_analyzer: Path | None = None,
    on_trial: Callable[[Trial], None] | None = None,
    grid: Mapping[Knob, Sequence[int]] | None = None,
    timeout_s: float | None = None,
) -> TuningResult:
    """Profile `model` of `request.pipeline` alone with Model Analyzer (see module doc).

    The grid is the model's `search_space` (instance count, ONNX Runtime threads, queue
    delay) restricted to `request.knobs`, each knob's values replaced by `grid[knob]` when
    given; concurrency levels, the window and max trials come from `request`;
    `request.input_data` (the pipeline's inputs) is not used: the model is measured alone.
    The overlay sets the chosen settings of `model` on top of `request.base_overlay`.
    """
    from tritonkit.build import build_repository  # noqa: PLC0415

    executable = model_analyzer or find_model_analyzer()
    spec = load_spec(request.spec_path, overlay=request.base_overlay)
    all_spaces = [restrict(s, request.knobs)
                  for s in search_space(spec, request.pipeline, cores=request.cores)]
    spec_model, space = _native_model(spec, request.pipeline, model, all_spaces)
    values = model_grid(space, grid)
    if not values:
        raise TuningError(f"{model}: nothing to search; the Model Analyzer engine searches "
                          f"{', '.join(k.value for k in GRID_KNOBS)} (see --knobs)")
    tuned_space = ModelSpace(
        model=model, start=space.start, choices=dict(values),
        fixed={**space.fixed, **({Knob.PREFERRED_BATCH_SIZES: PREFERRED_REASON}
                                 if Knob.PREFERRED_BATCH_SIZES in space.start else {})})
    analyzer = find_perf_analyzer()

    work = request.work_dir
    repository = work / "repository"
    build_repository(spec, target=target, out=repository, remember=False)
    built = read_config(repository / model / "config.pbtxt")
    if built.backend != "onnxruntime" and built.platform != "onnxruntime_onnx":
        raise TuningError(f"{model} is built for {built.backend or built.platform} on target "
                          f"{target.value}; the Model Analyzer engine profiles ONNX Runtime "
                          "models (target local)")
    kind = model_kind(built)

    ma_dir = work / "model-analyzer"
    for stale in ("export", "output_repository"):  # no checkpoint of an earlier run is resumed
        shutil.rmtree(ma_dir / stale, ignore_errors=True)
    ma_dir.mkdir(parents=True, exist_ok=True)
    server_wrapper, backend_dir, leftovers = _server_wrapper(ma_dir)
    from tritonkit.server import pick_free_ports  # noqa: PLC0415

    http, grpc, metrics = pick_free_ports(3)
    setup = AnalyzerSetup(
        repository=repository.resolve(), work_dir=ma_dir.resolve(),
        server_wrapper=server_wrapper.resolve(),
        perf_analyzer_wrapper=_perf_analyzer_wrapper(ma_dir, analyzer).resolve(),
        backend_dir=backend_dir.resolve(), ports=(http, grpc, metrics),
        concurrencies=request.concurrencies,
        measurement_interval_ms=request.sweep.measurement_interval_ms,
        max_trials=request.sweep.max_trials,
        input_data=model_input_data(spec_model, ma_dir / "input_data.json"),
        perf_analyzer_timeout_s=int(request.sweep.timeout_s))
    setup.export_path.mkdir(parents=True)  # Model Analyzer wants its parent to exist
    config = analyzer_config(setup, model, model_config_parameters(values, instance_kind=kind))
    configs = grid_size(values) + 1
    points = configs * len(request.concurrencies)
    log.info("Model Analyzer: %s alone, %d configs (the spec's and %s), %d levels each: %d "
             "points", model, configs,
             " x ".join(f"{k.value} {list(v)}" for k, v in values.items()),
             len(request.concurrencies), points)
    if timeout_s is None:  # generous: a level normally takes 3-5 windows
        timeout_s = 300 + configs * 60 + points * (request.sweep.max_trials * (
            MAX_AUTO_ADJUSTS + 1) * request.sweep.measurement_interval_ms / 1000 + 10)
    log_path = run_model_analyzer(executable, config, setup.work_dir, leftovers=leftovers,
                                  timeout_s=timeout_s)
    if not setup.results_csv.is_file():
        tail = "\n".join(log_path.read_text(errors="replace").strip().splitlines()[-15:])
        raise TuningError(f"Model Analyzer wrote no {CSV_NAME}:\n{tail}\nLog: {log_path}")
    measured = parse_inference_csv(setup.results_csv.read_text(encoding="utf-8"), model=model,
                                   source=str(setup.results_csv))
    for variant, levels in sorted(measured.items()):
        missing = sorted(set(request.concurrencies) - {p.concurrency for p in levels})
        if missing:
            log.warning("Model Analyzer has no result of %s at concurrency %s (a level that "
                        "never stabilized ends its sweep); see %s", variant,
                        ", ".join(map(str, missing)),
                        setup.export_path / "perf_analyzer_error.log")
    result = trials_from_results(measured, setup.output_repository, tuned_space,
                                 budget_p99_ms=request.budget_p99_ms,
                                 min_gain=request.min_gain)
    for trial in result.trials:
        log.info("trial %d: %s -> %.0f infer/s at c=%d, p99 %.1f ms%s", trial.number,
                 trial.describe(), trial.score.throughput, trial.score.concurrency,
                 trial.score.p99_ms, "" if trial.score.in_budget else " (over budget)")
        if on_trial is not None:
            on_trial(trial)
    overlay = overlay_for(result.chosen.settings, spec, target=target,
                          base=request.base_overlay, source=work / "candidate_overlay.yaml")
    return TuningResult(pipeline=f"{request.pipeline}/{model}",
                        budget_p99_ms=request.budget_p99_ms, spaces=(tuned_space,),
                        search=result, overlay=overlay)


def model_kind(config: model_config_pb2.ModelConfig) -> str:
    """The instance kind of a built config's first instance group (KIND_CPU when none)."""
    if config.instance_group:
        return str(model_config_pb2.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind))
    return "KIND_CPU"
