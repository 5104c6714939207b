"""`tritonkit tune --engine model-analyzer`: profile ONE model with Triton Model Analyzer.

Runs `model-analyzer profile` (prepared by `model_analyzer_setup`) and stops everything it
started, reads its CSV and generated configs back as the project's `Trial`s, and chooses
under the p99 budget with `score()`, so `write_tuning_report` and `tune_and_write` work
unchanged. `tune_model_with_model_analyzer` is the entry point.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tritonkit.errors import ServerError, TuningError
from tritonkit.repository.config_io import read_config
from tritonkit.runtime.parameters import ORT_INTRA_OP_THREADS
from tritonkit.spec import BuildSpec, ModelSpec, Target, load_spec
from tritonkit.tuning.model_analyzer_setup import (
    CSV_NAME,
    EXECUTABLE,
    GRID_KNOBS,
    MAX_AUTO_ADJUSTS,
    AnalyzerSetup,
    analyzer_config,
    find_model_analyzer,
    grid_size,
    model_config_parameters,
    model_grid,
    model_input_data,
    model_kind,
    write_perf_analyzer_wrapper,
    write_server_wrapper,
)
from tritonkit.tuning.perf_analyzer import SweepPoint, find_perf_analyzer
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

MARKER_VAR = "TRITONKIT_MODEL_ANALYZER_RUN"  # in the environment of everything it starts
PREFERRED_REASON = "left at the spec's value by the Model Analyzer engine"
_DEFAULT_VARIANT = "_config_default"
_STOP_TIMEOUT_S = 10.0


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


def _kill_marked(executables: set[Path], marker: str) -> list[int]:
    """SIGKILL every live process of `executables` whose environment carries `marker`."""
    from tritonkit.server.process_tree import find_processes, kill_until_gone  # noqa: PLC0415

    entry = f"{MARKER_VAR}={marker}".encode()
    killed, survivors = kill_until_gone(
        lambda: find_processes(executables=executables, environ_entry=entry),
        timeout_s=_STOP_TIMEOUT_S)
    if survivors:
        raise TuningError(f"processes {survivors} of a Model Analyzer run survived SIGKILL")
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
    Returns the log path.

    Model Analyzer starts tritonserver and perf_analyzer in sessions of their own, so
    stopping its process group is not enough: every process it starts inherits `MARKER_VAR`
    in its environment, and when the run ends (or times out, or is interrupted) Model
    Analyzer's group is stopped and any of `leftovers` still carrying the marker is killed."""
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
    """Profile `model` of `request.pipeline` alone with Model Analyzer.

    Unlike the default engine (`tune_pipeline`: the whole pipeline, one knob at a time, end
    to end), Model Analyzer (`model-analyzer profile`, local launch mode, our own
    tritonserver and perf_analyzer) measures one native (ONNX Runtime) model alone, with
    the spec's warmup samples as inputs (else random data), on every combination of a
    manual grid (a full product) and the spec's own config (`<model>_config_default`, the
    start). It reports no p50 (avg/p90/p95/p99): `SweepPoint.p50_ms` is NaN. Ensembles are
    not profiled (Model Analyzer forces its quick search on them). Preferred batch sizes
    stay at the spec's value: with them in the config, Model Analyzer refuses to vary the
    batch size. It restarts the server for every config (~4 s each on 2 cores) and retries
    an unstable level with a longer window (`MAX_AUTO_ADJUSTS` times), then ends that
    config's sweep.

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
    server_wrapper, backend_dir, leftovers = write_server_wrapper(ma_dir)
    from tritonkit.server import pick_free_ports  # noqa: PLC0415

    http, grpc, metrics = pick_free_ports(3)
    setup = AnalyzerSetup(
        repository=repository.resolve(), work_dir=ma_dir.resolve(),
        server_wrapper=server_wrapper.resolve(),
        perf_analyzer_wrapper=write_perf_analyzer_wrapper(ma_dir, analyzer).resolve(),
        backend_dir=backend_dir.resolve(), ports=(http, grpc, metrics),
        concurrencies=request.concurrencies,
        measurement_interval_ms=request.sweep.measurement_interval_ms,
        max_trials=request.sweep.max_trials,
        stability_percentage=request.sweep.stability_percentage,
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
