"""`tritonkit tune` end to end: real inputs in, a reviewed overlay and a report out."""

from __future__ import annotations

import glob
import logging
import platform
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tritonkit.errors import TuningError
from tritonkit.spec import SpecOverlay, Target, render_overlay
from tritonkit.tuning.perf_analyzer import write_input_data
from tritonkit.tuning.report import write_tuning_report
from tritonkit.tuning.search import Trial, format_value
from tritonkit.tuning.session import TuningRequest, TuningResult, tune_pipeline

log = logging.getLogger(__name__)


def input_data_from_files(patterns: Mapping[str, str], path: Path) -> Path:
    """perf_analyzer input data with one BYTES row per file: {input name: glob pattern}."""
    columns: dict[str, np.ndarray] = {}
    for name, pattern in patterns.items():
        files = sorted(glob.glob(pattern))
        if not files:
            raise TuningError(f"input {name!r}: no file matches {pattern!r}")
        columns[name] = np.array([[Path(f).read_bytes()] for f in files], dtype=object)
    rows = min(len(c) for c in columns.values())
    return write_input_data({n: c[:rows] for n, c in columns.items()}, path)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def overlay_header(result: TuningResult, request: TuningRequest) -> str:
    changes = result.search.changes()
    moved = "; ".join(f"{m}.{k.value} {format_value(a)} -> {format_value(b)}"
                      for m, k, a, b in changes) or "nothing changed"
    chosen = result.search.chosen.score
    return (f"Serving settings measured by `tritonkit tune` on "
            f"{datetime.now(timezone.utc):%Y-%m-%d}, {request.cores} cores ({_cpu_name()}).\n"
            f"Last tuned: pipeline {result.pipeline}, p99 budget {result.budget_p99_ms:g} ms: "
            f"{chosen.throughput:.0f} infer/s at concurrency {chosen.concurrency}, p99 "
            f"{chosen.p99_ms:.1f} ms ({moved}).\n"
            "Review before committing: these are measurements of one machine. Build with\n"
            "`tritonkit build --spec <spec> --target <target> --overlay <this file>`.")


def tune_and_write(request: TuningRequest, *, overlay_path: Path, report_dir: Path,
                   target: Target = Target.LOCAL,
                   on_trial: Callable[[Trial], None] | None = None,
                   tune: Callable[..., TuningResult] = tune_pipeline,
                   ) -> tuple[TuningResult, Path]:
    """Tune, write the report into `report_dir` and the overlay to `overlay_path`.

    `tune(request, target=..., on_trial=...)` is the engine: `tune_pipeline` (the default), or
    e.g. `functools.partial(tune_model_with_model_analyzer, model=...)`.
    """
    result = tune(request, target=target, on_trial=on_trial)
    report = write_tuning_report(result, report_dir)
    overlay = SpecOverlay(source=overlay_path.resolve(), target=target,
                          models=result.overlay.models, python_steps=result.overlay.python_steps)
    overlay_path.parent.mkdir(parents=True, exist_ok=True)
    overlay_path.write_text(render_overlay(overlay, header=overlay_header(result, request)),
                            encoding="utf-8")
    log.info("wrote %s and %s", overlay_path, report)
    return result, report
