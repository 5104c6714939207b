"""`tune_pipeline`: measure a pipeline's serving settings on the real local Triton.

The repository is built from the spec (with the overlay tuned so far), served by a local
`tritonserver` in explicit model-control mode, and each candidate is applied by building the
spec with the candidate's overlay and reloading the changed models with that exact config
(Triton's load API with a config override): what is measured is what the overlay builds.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from tritonkit.errors import PerfAnalyzerError, TuningError
from tritonkit.repository.config_io import config_to_text, read_config
from tritonkit.spec import (
    BuildSpec,
    ModelSpec,
    PythonStepSpec,
    SpecOverlay,
    Target,
    has_bytes,
    load_spec,
)
from tritonkit.tuning.perf_analyzer import (
    SweepPoint,
    SweepSettings,
    find_perf_analyzer,
    measure_concurrency,
)
from tritonkit.tuning.search import (
    Knob,
    KnobValue,
    ModelSpace,
    SearchResult,
    Settings,
    Trial,
    coordinate_search,
)

log = logging.getLogger(__name__)

QUEUE_DELAYS_US = (0, 100, 500, 2000)
PREFERRED_SIZES = (2, 4, 8)  # each tried alone, besides none and the spec's own
MAX_INSTANCES = 4
GUARD_REASON = "the BYTES batch guard needs a queue delay of 0 (spec rule)"


@dataclass(frozen=True, kw_only=True)
class TuningRequest:
    """What to tune and how: one pipeline of a spec, its real inputs, a p99 budget."""

    spec_path: Path
    pipeline: str
    input_data: Path  # perf_analyzer --input-data JSON with the pipeline's real inputs
    budget_p99_ms: float
    work_dir: Path
    concurrencies: tuple[int, ...] = (1, 2, 4, 8, 16)
    sweep: SweepSettings = field(default_factory=SweepSettings)
    min_gain: float = 0.05
    base_overlay: SpecOverlay | None = None
    knobs: frozenset[Knob] = frozenset(Knob)  # the knobs to search; the others keep the spec's
    cores: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))

    def __post_init__(self) -> None:
        if self.budget_p99_ms <= 0:
            raise TuningError(f"the p99 budget must be positive, got {self.budget_p99_ms} ms")
        if not self.concurrencies or min(self.concurrencies) < 1:
            raise TuningError(f"concurrencies must be >= 1, got {list(self.concurrencies)}")
        if not self.input_data.is_file():
            raise TuningError(f"input data {self.input_data} does not exist (perf_analyzer "
                              "--input-data JSON with the pipeline's real inputs)")


@dataclass(frozen=True, kw_only=True)
class TuningResult:
    pipeline: str
    budget_p99_ms: float
    spaces: tuple[ModelSpace, ...]
    search: SearchResult
    overlay: SpecOverlay


def _pipeline_models(spec: BuildSpec, pipeline: str) -> list[ModelSpec | PythonStepSpec]:
    pipelines = {p.name: p for p in spec.pipelines}
    if pipeline not in pipelines:
        raise TuningError(f"{spec.source.name} has no pipeline {pipeline!r} "
                          f"(pipelines: {', '.join(sorted(pipelines)) or 'none'})")
    by_name: dict[str, ModelSpec | PythonStepSpec] = {m.name: m for m in spec.models}
    by_name.update({s.name: s for s in spec.python_steps})
    seen: list[str] = []
    for step in pipelines[pipeline].steps:
        if step.model not in seen:
            seen.append(step.model)
    return [by_name[name] for name in seen]


def search_space(spec: BuildSpec, pipeline: str, *, cores: int) -> list[ModelSpace]:
    """The knobs of every model of `pipeline`, their starting values and their choices."""
    spaces = []
    instances = tuple(range(1, min(MAX_INSTANCES, cores + 1) + 1))
    for model in _pipeline_models(spec, pipeline):
        serving = model.serving
        start: dict[Knob, KnobValue] = {Knob.INSTANCE_COUNT: serving.instance_group.count}
        choices: dict[Knob, tuple[KnobValue, ...]] = {Knob.INSTANCE_COUNT: instances}
        fixed: dict[Knob, str] = {}
        if isinstance(model, ModelSpec):
            start[Knob.INTRA_OP_THREADS] = model.onnxruntime.intra_op_threads
            choices[Knob.INTRA_OP_THREADS] = tuple(range(1, cores + 1))
        batching = serving.dynamic_batching
        if batching is None:
            fixed[Knob.MAX_QUEUE_DELAY_US] = "the spec turns dynamic batching off"
        elif isinstance(model, PythonStepSpec) and has_bytes(model.inputs):
            fixed[Knob.MAX_QUEUE_DELAY_US] = GUARD_REASON
        else:
            start[Knob.MAX_QUEUE_DELAY_US] = batching.max_queue_delay_us
            choices[Knob.MAX_QUEUE_DELAY_US] = QUEUE_DELAYS_US
            if isinstance(model, ModelSpec):
                preferred = batching.preferred_batch_sizes
                start[Knob.PREFERRED_BATCH_SIZES] = preferred
                singles = tuple((b,) for b in PREFERRED_SIZES if b <= serving.max_batch_size)
                choices[Knob.PREFERRED_BATCH_SIZES] = tuple(dict.fromkeys(
                    ((), preferred, *singles)))
        spaces.append(ModelSpace(model=model.name, start=start, choices=choices, fixed=fixed))
    return spaces


def restrict(space: ModelSpace, knobs: frozenset[Knob]) -> ModelSpace:
    """`space` searching only `knobs` (the others keep their starting values)."""
    left_out = {k: "not asked for (--knobs)" for k in space.choices if k not in knobs}
    return replace(space, choices={k: v for k, v in space.choices.items() if k in knobs},
                   fixed={**space.fixed, **left_out})


def overlay_for(settings: Settings, spec: BuildSpec, *, target: Target,
                base: SpecOverlay | None, source: Path) -> SpecOverlay:
    """`base` with every tuned model's entry replaced by `settings`."""
    steps = {s.name for s in spec.python_steps}
    models: dict[str, Mapping[str, Any]] = dict(base.models) if base else {}
    python_steps: dict[str, Mapping[str, Any]] = dict(base.python_steps) if base else {}
    for model, knobs in settings.items():
        entry: dict[str, Any] = {"instance_group": {"count": knobs[Knob.INSTANCE_COUNT]}}
        batching: dict[str, Any] = {}
        if Knob.MAX_QUEUE_DELAY_US in knobs:
            batching["max_queue_delay_us"] = knobs[Knob.MAX_QUEUE_DELAY_US]
        if Knob.PREFERRED_BATCH_SIZES in knobs:
            batching["preferred_batch_sizes"] = list(knobs[Knob.PREFERRED_BATCH_SIZES])  # type: ignore[arg-type]
        if batching:
            entry["dynamic_batching"] = batching
        if Knob.INTRA_OP_THREADS in knobs:
            entry["onnxruntime"] = {"intra_op_threads": knobs[Knob.INTRA_OP_THREADS]}
        (python_steps if model in steps else models)[model] = entry
    return SpecOverlay(source=source, target=target, models=models, python_steps=python_steps)


class _Server:
    """The local server of one tuning run and the configs its models were loaded with."""

    def __init__(self, repository: Path, pipeline: str, work_dir: Path) -> None:
        from tritonkit.server import LocalTriton  # noqa: PLC0415 - the serve extra

        self.triton = LocalTriton(repository, model_control="explicit", load_models=[pipeline],
                                  log_path=work_dir / "tritonserver.log")
        self.loaded: dict[str, str] = {}

    def reload(self, repository: Path, models: Sequence[str]) -> None:
        from tritonclient import http  # noqa: PLC0415

        client = http.InferenceServerClient(self.triton.urls.http_hostport)
        for model in models:
            config = read_config(repository / model / "config.pbtxt")
            text = config_to_text(config)
            if self.loaded.get(model) == text:
                continue
            log.info("reloading %s with its candidate config", model)
            try:
                client.load_model(model, config=json_format.MessageToJson(
                    config, preserving_proto_field_name=True))
            except Exception as e:  # tritonclient raises InferenceServerException
                raise TuningError(f"{model} failed to load with its candidate config: "
                                  f"{e}") from e
            self.loaded[model] = text


def tune_pipeline(request: TuningRequest, *, target: Target = Target.LOCAL,
                  on_trial: Callable[[Trial], None] | None = None) -> TuningResult:
    """Search the serving settings of `request.pipeline` on a local Triton (see module doc)."""
    from tritonkit.build import build_repository  # noqa: PLC0415

    work = request.work_dir
    spec = load_spec(request.spec_path, overlay=request.base_overlay)
    spaces = [restrict(s, request.knobs)
              for s in search_space(spec, request.pipeline, cores=request.cores)]
    analyzer = find_perf_analyzer()
    repository = work / "repository"
    candidate_repo = work / "candidate"
    build_repository(spec, target=target, out=repository, remember=False)
    overlay_path = work / "candidate_overlay.yaml"
    server = _Server(repository, request.pipeline, work)
    models = [s.model for s in spaces]

    def measure(settings: Settings) -> list[SweepPoint]:
        overlay = overlay_for(settings, spec, target=target, base=request.base_overlay,
                              source=overlay_path)
        candidate = load_spec(request.spec_path, overlay=overlay)
        build_repository(candidate, target=target, out=candidate_repo, remember=False)
        server.reload(candidate_repo, models)
        try:
            return measure_concurrency(analyzer, server.triton.urls.grpc_hostport,
                                       request.pipeline, input_data=request.input_data,
                                       concurrencies=request.concurrencies,
                                       settings=request.sweep, work_dir=work / "perf")
        except PerfAnalyzerError as e:  # one unstable candidate must not end the search
            log.warning("%s; the candidate scores as unmeasured", e)
            return []

    with server.triton:
        for model in models:  # what the server loaded from the repository
            server.loaded[model] = config_to_text(read_config(repository / model /
                                                              "config.pbtxt"))
        result = coordinate_search(spaces, measure, budget_p99_ms=request.budget_p99_ms,
                                   min_gain=request.min_gain, on_trial=on_trial)
    shutil.rmtree(candidate_repo, ignore_errors=True)
    overlay = overlay_for(result.chosen.settings, spec, target=target,
                          base=request.base_overlay, source=overlay_path)
    return TuningResult(pipeline=request.pipeline, budget_p99_ms=request.budget_p99_ms,
                        spaces=tuple(spaces), search=result, overlay=overlay)
