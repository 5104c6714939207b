"""Preparing a Model Analyzer run for `tune_model_with_model_analyzer` (`model_analyzer`).

Finds the `model-analyzer` executable, turns a model's search space into Model Analyzer's
manual grid, writes the tritonserver and perf_analyzer wrappers, the backend directory and
the warmup input data, and builds the `model-analyzer profile -f` YAML config.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2

from tritonkit.errors import NativeBuildError, TuningError
from tritonkit.runtime.parameters import ORT_INTRA_OP_THREADS
from tritonkit.spec import ModelSpec
from tritonkit.tuning.perf_analyzer import PerfAnalyzer
from tritonkit.tuning.search import Knob, KnobValue, ModelSpace

log = logging.getLogger(__name__)

ENV_VAR = "TRITONKIT_MODEL_ANALYZER"
EXECUTABLE = "model-analyzer"
VERSION = "1.58.0"  # tuning/model-analyzer-requirements.txt pins the same
INSTALL_HINT = (
    f"install it with `make model-analyzer` (triton-model-analyzer=={VERSION} in "
    ".venv-model-analyzer/, a virtualenv of its own: it needs numpy 2 and protobuf 6) and "
    f"set {ENV_VAR} to its bin/{EXECUTABLE} (the Makefile exports it), or put "
    f"`{EXECUTABLE}` on PATH")
GRID_KNOBS = (Knob.INSTANCE_COUNT, Knob.INTRA_OP_THREADS, Knob.MAX_QUEUE_DELAY_US)
# perf_analyzer's windows as the default engine's, judged less strictly: Model Analyzer judges
# stability on the average latency (no --percentile), which a single batcher stall on a loaded
# 2-core machine moves by more than 25 % (measured: it never stabilized at 25).
STABILITY_PERCENTAGE = 50.0
MAX_AUTO_ADJUSTS = 2  # Model Analyzer's retries with a longer window after an unstable level
INPUT_ROWS = 256  # rows of warmup samples given to perf_analyzer
CSV_NAME = "metrics-model-inference.csv"


# --------------------------------------------------------------------------- finding it


def find_model_analyzer() -> Path:
    """`$TRITONKIT_MODEL_ANALYZER`, else `model-analyzer` on PATH; TuningError otherwise.

    Model Analyzer lives in a virtualenv of its own (it needs numpy 2 and protobuf 6; ours
    stays on numpy < 2): `make model-analyzer` installs it into `.venv-model-analyzer/`."""
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


def model_kind(config: model_config_pb2.ModelConfig) -> str:
    """The instance kind of a built config's first instance group (KIND_CPU when none)."""
    if config.instance_group:
        return str(model_config_pb2.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind))
    return "KIND_CPU"


# --------------------------------------------------------------------------- the config


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


# --------------------------------------------------------------------------- its files


def _write_wrapper(path: Path, binary: Path, env: Mapping[str, str], comment: str) -> Path:
    lines = ["#!/bin/bash", f"# written by tritonkit: {comment}"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    lines.append(f'exec {shlex.quote(str(binary))} "$@"')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def write_server_wrapper(work: Path) -> tuple[Path, Path, set[Path]]:
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


def write_perf_analyzer_wrapper(work: Path, analyzer: PerfAnalyzer) -> Path:
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

