"""Run every system side by side on the same machine, inputs and request shapes.

Systems: (a) the in-process limit, (b) the peers: FastAPI + ONNX Runtime, and PyTriton (the
pipeline bound as one Python callable behind PyTriton's tritonserver), (c) our Triton ensemble
in the configurations of `variants`. (b) and (c) are driven by the same hey load at equal
concurrency with byte-identical KServe v2 bodies; (c) is also measured with perf_analyzer over
gRPC, ensemble and each step. The summary keys are computed for the online shape at the
concurrency where the peer compared with peaks (the FastAPI peer for the `*_fastapi` keys,
PyTriton for the `*_pytriton` keys). Workloads named only in the scenarios file (detection,
embeddings) are measured with perf_analyzer alone, ensemble and each step, on the default
variant, whose repository then serves their pipelines too.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tritonkit_client.kserve_codec import encode_request, request_headers

from harness.benchmarks import variants as v
from harness.benchmarks.errors import BenchmarkError, PerfAnalyzerError
from harness.benchmarks.fastapi_peer import serve_peer
from harness.benchmarks.hey_driver import LoadResult, sweep
from harness.benchmarks.hop_costs import hop_costs
from harness.benchmarks.inprocess_limit import available_cores, measure_inprocess_limit
from harness.benchmarks.perf_analyzer import profile_pipeline, run_perf_analyzer
from harness.benchmarks.python_floor import FLOOR_OUTPUT, FLOOR_STEP, floor_step
from harness.benchmarks.pytriton_peer import serve_pytriton
from harness.benchmarks.report import (
    BenchResults,
    LimitResult,
    ProfileSection,
    RequestShape,
    Summary,
    SystemSeries,
    write_report,
)
from harness.benchmarks.scenarios import Peer, PeerLoad, load_scenarios
from harness.benchmarks.step_profile import profile_steps
from harness.benchmarks.workloads import (
    CLASS_COUNTS,
    CLASSIFICATION_OUTPUTS,
    PIPELINES,
    Workload,
    WorkloadName,
    load_workload,
)
from tritonkit.server import LocalTriton
from tritonkit.spec import BuildSpec, SpecOverlay, load_spec

log = logging.getLogger(__name__)

PEER = "fastapi"
PYTRITON = "pytriton"
ONE_HOP = "triton-one-step"  # the first Python step alone
FLOOR = "python-floor"  # a no-op Python step alone (harness.benchmarks.python_floor)
LIMIT = "in-process limit"
OUTPUTS = CLASSIFICATION_OUTPUTS
GAIN_MIN_CONCURRENCY = 8


@dataclass(frozen=True, kw_only=True)
class BenchPlan:
    """What to run. Load levels, windows and request shapes come from the scenarios file."""

    scenarios: Path
    limit_duration_s: float
    limit_batch_sizes: tuple[int, ...]
    variants: tuple[v.TritonVariant, ...]
    profiled_workloads: tuple[str, ...]  # ensemble + each step under perf_analyzer
    # Side by side on every system (hey, FastAPI peer, in-process limit). The scenarios file may
    # name more workloads: those run under perf_analyzer only, on the default variant.
    workloads: tuple[str, ...] = ("light", "heavy")
    hop_costs_interval_ms: int = 0  # the light pipeline's hops one by one at concurrency 1 (0: off)


HERE = Path(__file__).parent
FULL = BenchPlan(scenarios=HERE / "scenarios.yaml", limit_duration_s=3,
                 limit_batch_sizes=(1, 4, 16, 32),
                 variants=(v.DEFAULT, v.NO_BATCHING),
                 profiled_workloads=("light", "heavy", "detection", "embeddings"),
                 hop_costs_interval_ms=2000)
SMOKE = BenchPlan(scenarios=HERE / "scenarios_smoke.yaml", limit_duration_s=0.5,
                  limit_batch_sizes=(1, 16), variants=(v.DEFAULT, v.NO_BATCHING),
                  profiled_workloads=("light",), hop_costs_interval_ms=500)


@dataclass(frozen=True, kw_only=True)
class _Load:
    """The hey settings of one run: levels, window and request shapes."""

    concurrencies: tuple[int, ...]
    duration_s: float
    warmup_s: float
    images_per_request: tuple[int, ...]
    peers: tuple[PeerLoad, ...] = ()  # the peers hey drives and their request shapes

    def peer_shapes(self, peer: Peer) -> tuple[int, ...]:
        return next((p.batch_images for p in self.peers if p.peer is peer), ())


def _shape(images_per_request: int) -> RequestShape:
    return RequestShape.ONLINE if images_per_request == 1 else RequestShape.OFFLINE


@dataclass(kw_only=True)
class _Collected:
    series: list[SystemSeries] = field(default_factory=list)
    limits: list[LimitResult] = field(default_factory=list)
    perf_points: list[object] = field(default_factory=list)
    profile: list[ProfileSection] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    limit_by_batch: dict[str, dict[int, float]] = field(default_factory=dict)  # images/s


def _body(workload: Workload, count: int,
          outputs: Sequence[str] = OUTPUTS) -> tuple[bytes, dict[str, str]]:
    counts = {name: k for name, k in CLASS_COUNTS.items() if name in outputs}
    body, header_length = encode_request({"IMAGE": workload.image_batch(count)}, outputs,
                                         class_counts=counts)
    return body, request_headers(header_length)


def _measure_http(system: str, url: str, workload: Workload, load: _Load,
                  collected: _Collected, *, outputs: Sequence[str] = OUTPUTS,
                  images_per_request: Sequence[int] | None = None) -> None:
    name = workload.name.value
    for count in images_per_request or load.images_per_request:
        body, headers = _body(workload, count, outputs)
        if load.warmup_s > 0:  # not recorded: loads models' caches, JIT paths, connections
            sweep(url, body, headers, [max(load.concurrencies)], load.warmup_s, timeout_s=60)
        log.info("%s: %s, %d image(s)/request over HTTP at concurrency %s", system, name,
                 count, load.concurrencies)
        points = sweep(url, body, headers, load.concurrencies, load.duration_s,
                       timeout_s=60, system=system)
        failed = sum(p.errors for p in points)
        if failed:
            collected.notes.append(f"{system} {name} {count} images/request: {failed} errors")
        collected.series.append(SystemSeries(system=system, workload=name, shape=_shape(count),
                                             points=tuple(points), images_per_request=count))


def _limits(repository: Path, workload: Workload, plan: BenchPlan, load: _Load,
            collected: _Collected) -> None:
    result = measure_inprocess_limit(repository, workload.pipeline, workload.images,
                                     batch_sizes=plan.limit_batch_sizes,
                                     duration_s=plan.limit_duration_s)
    for count in load.images_per_request:
        collected.limits.append(LimitResult(workload=workload.name.value, shape=_shape(count),
                                            images_per_s=result.images_per_s,
                                            batch_size=result.best.batch_size))
    collected.limit_by_batch[workload.name.value] = {
        p.batch_size: p.images_per_s for p in result.points}
    rows = tuple((p.batch_size, round(p.images_per_s, 1), round(p.images_per_cpu_s, 1))
                 for p in result.points)
    collected.profile.append(ProfileSection(
        title=(f"{workload.name.value}: in-process limit by batch size "
               f"({available_cores()} processes)"),
        columns=("batch", "images/s", "images per CPU-second"), rows=rows))


def _series(collected: _Collected, system: str, workload: str,
            shape: RequestShape) -> dict[int, LoadResult]:
    for s in collected.series:
        if s.system == system and s.workload == workload and s.shape is shape:
            return {p.concurrency: p for p in s.points}
    raise BenchmarkError(f"no measurements of {system} on {workload} {shape.value}")


def _peak(collected: _Collected, system: str, workload: str) -> LoadResult:
    series = _series(collected, system, workload, RequestShape.ONLINE)
    return max(series.values(), key=lambda p: p.throughput_rps)


def batching_ceiling(collected: _Collected) -> float:
    """In-process images/s at the best batch over batch 1 (heavy): what batching can gain."""
    heavy = collected.limit_by_batch.get("heavy", {})
    if 1 not in heavy:
        raise BenchmarkError("the heavy in-process limit has no batch-1 point: no batching "
                             "ceiling")
    return max(heavy.values()) / heavy[1]


def summarize(collected: _Collected) -> Summary:
    """The summary keys, online shape. Light keys: Triton at the concurrency where the peer
    peaks (FastAPI for `*_fastapi`, PyTriton for `*_pytriton`). Heavy keys: each system's own
    peak (a compute-bound pipeline needs more requests in flight to fill its instances). The
    batching gain: both Triton variants at the highest concurrency both ran."""
    online = RequestShape.ONLINE

    def at_peer_peak(workload: str, peer_name: str) -> tuple[LoadResult, LoadResult]:
        peak = _peak(collected, peer_name, workload)
        return _series(collected, v.DEFAULT.name, workload, online)[peak.concurrency], peak

    light_triton, light_peer = at_peer_peak("light", PEER)
    light_triton_p, light_pytriton = at_peer_peak("light", PYTRITON)
    heavy_triton = _peak(collected, v.DEFAULT.name, "heavy")
    limit = next(x for x in collected.limits if x.workload == "heavy" and x.shape is online)
    batched = _series(collected, v.DEFAULT.name, "heavy", online)
    unbatched = _series(collected, v.NO_BATCHING.name, "heavy", online)
    gain_at = max(c for c in batched if c in unbatched)
    if gain_at < GAIN_MIN_CONCURRENCY:
        collected.notes.append(f"dynamic batching gain measured at concurrency {gain_at}, "
                               f"below the target's {GAIN_MIN_CONCURRENCY}")
    return Summary(
        heavy_triton_vs_limit=heavy_triton.throughput_rps / limit.images_per_s,
        heavy_triton_vs_fastapi=(heavy_triton.throughput_rps
                                 / _peak(collected, PEER, "heavy").throughput_rps),
        light_triton_vs_fastapi=light_triton.throughput_rps / light_peer.throughput_rps,
        heavy_triton_vs_pytriton=(heavy_triton.throughput_rps
                                  / _peak(collected, PYTRITON, "heavy").throughput_rps),
        light_triton_vs_pytriton=light_triton_p.throughput_rps / light_pytriton.throughput_rps,
        heavy_dynamic_batching_gain=(batched[gain_at].throughput_rps
                                     / unbatched[gain_at].throughput_rps),
        heavy_batching_ceiling=batching_ceiling(collected),
        light_p99_ms_triton=light_triton.p99_ms,
        light_p99_ms_fastapi=light_peer.p99_ms,
    )


def ceilings(collected: _Collected, summary: Summary) -> ProfileSection:
    """What this machine allows for each ratio, from this run's own measurements."""
    online = RequestShape.ONLINE
    rows: list[tuple[object, ...]] = []

    def peak(system: str, workload: str) -> float | None:
        try:
            return max(p.throughput_rps for p in _series(collected, system, workload,
                                                         online).values())
        except BenchmarkError:
            return None

    heavy_limit = collected.limit_by_batch.get("heavy", {})
    for peer, key in ((PEER, "heavy_triton_vs_fastapi"), (PYTRITON, "heavy_triton_vs_pytriton")):
        heavy_peer = peak(peer, "heavy")
        if heavy_limit and heavy_peer:
            best = max(heavy_limit.values())
            rows.append((key, round(getattr(summary, key), 3), round(best / heavy_peer, 3),
                         f"the in-process limit ({best:.0f} images/s) over {peer}'s peak "
                         f"({heavy_peer:.0f} req/s): no server can pass the limit"))
    if 1 in heavy_limit:
        best = max(heavy_limit.values())
        rows.append(("heavy_dynamic_batching_gain", round(summary.heavy_dynamic_batching_gain, 3),
                     round(best / heavy_limit[1], 3),
                     f"in-process images/s at the best batch ({best:.0f}) over batch 1 "
                     f"({heavy_limit[1]:.0f}): what batching saves on this CPU"))
    one_hop = peak(ONE_HOP, "light")
    floor = peak(FLOOR, "light")
    for peer, key in ((PEER, "light_triton_vs_fastapi"), (PYTRITON, "light_triton_vs_pytriton")):
        light_peer = peak(peer, "light")
        if one_hop and light_peer:
            rows.append((key, round(getattr(summary, key), 3), round(one_hop / light_peer, 3),
                         f"the pipeline's Python step alone ({one_hop:.0f} req/s) over {peer}'s "
                         f"peak ({light_peer:.0f} req/s): the ensemble adds a native ONNX "
                         "Runtime hop"))
        if floor and light_peer:
            rows.append((key, round(getattr(summary, key), 3), round(floor / light_peer, 3),
                         f"a no-op Python step alone, the floor of one Python-backend hop "
                         f"({floor:.0f} req/s), over {peer}'s peak ({light_peer:.0f} req/s)"))
    return ProfileSection(
        title="Ceilings: the most each ratio can reach here, measured in this run",
        columns=("key", "measured", "ceiling", "what bounds it"), rows=tuple(rows))


def _pytriton(repository: Path, workloads: Sequence[Workload], *, load: _Load, work: Path,
              collected: _Collected, phase: Callable[[str], None]) -> None:
    """The PyTriton peer: one process serving every workload's pipeline (as our Triton does),
    each bound as one Python callable, driven by the same hey load."""
    phase("PyTriton peer: starting")
    pipelines = tuple(dict.fromkeys(w.pipeline for w in workloads))
    with serve_pytriton(repository, pipelines, log_path=work / "pytriton.log") as server:
        for workload in workloads:
            phase(f"{workload.name.value}: PyTriton peer")
            _measure_http(PYTRITON, server.infer_url(workload.pipeline), workload, load,
                          collected, images_per_request=load.peer_shapes(Peer.PYTRITON))


def served_pipelines(plan: BenchPlan, variant: v.TritonVariant,
                     workloads: Sequence[Workload]) -> tuple[str, ...]:
    """The pipelines `variant`'s repository serves: those of the side-by-side workloads, and
    for the default variant (the one perf_analyzer measures) those of every scenario too."""
    pipelines = [w.pipeline for w in workloads]
    if variant == v.DEFAULT:
        pipelines += [PIPELINES[s.workload] for s in load_scenarios(plan.scenarios).perf]
    return tuple(dict.fromkeys(pipelines))


def _triton(spec: BuildSpec, variant: v.TritonVariant, workloads: Sequence[Workload], *,
            plan: BenchPlan, load: _Load, work: Path, collected: _Collected) -> None:
    pipelines = served_pipelines(plan, variant, workloads)
    light = [w for w in workloads if w.name is WorkloadName.LIGHT]
    first_light_step = _first_python_step(spec, light[0].pipeline) if light else None
    floor = ((floor_step(spec, first_light_step),)
             if variant == v.DEFAULT and first_light_step else ())
    repository = v.build_variant(spec, variant, pipelines, work / variant.name,
                                 extra_steps=floor)
    with LocalTriton(repository, log_path=work / f"{variant.name}.log") as server:
        for workload in workloads:
            url = f"{server.urls.http}/v2/models/{workload.pipeline}/infer"
            _measure_http(variant.name, url, workload, load, collected)
        if variant == v.DEFAULT:
            for workload in light:
                _measure_one_hop(spec, server.urls.http, workload, load, collected)
                if floor:
                    _measure_http(FLOOR, f"{server.urls.http}/v2/models/{FLOOR_STEP}/infer",
                                  workload, load, collected, outputs=(FLOOR_OUTPUT,),
                                  images_per_request=(1,))
                if floor and plan.hop_costs_interval_ms and first_light_step:
                    collected.profile.append(hop_costs(
                        server.urls, workload, first_light_step, work,
                        interval_ms=plan.hop_costs_interval_ms))
            _perf_analyzer(repository, server.urls.grpc, plan, work, collected)


def _first_python_step(spec: BuildSpec, pipeline_name: str) -> str | None:
    pipeline = next((p for p in spec.pipelines if p.name == pipeline_name), None)
    if pipeline is None or spec.python_step(pipeline.steps[0].model) is None:
        return None
    return pipeline.steps[0].model


def _measure_one_hop(spec: BuildSpec, http_url: str, workload: Workload, load: _Load,
                     collected: _Collected) -> None:
    """The pipeline's first step alone (one Python-backend hop, online shape): a bound on what
    any ensemble of such steps can serve on this machine."""
    name = _first_python_step(spec, workload.pipeline)
    first = spec.python_step(name) if name is not None else None
    if first is None:
        return
    url = f"{http_url}/v2/models/{first.name}/infer"
    _measure_http(ONE_HOP, url, workload, load, collected,
                  outputs=tuple(t.name for t in first.outputs), images_per_request=(1,))


def _perf_analyzer(repository: Path, grpc_url: str, plan: BenchPlan, work: Path,
                   collected: _Collected) -> None:
    config = load_scenarios(plan.scenarios)
    out = work / "perf_analyzer"
    out.mkdir(parents=True, exist_ok=True)
    for scenario in config.perf:
        log.info("perf_analyzer: %s", scenario.name)
        try:
            collected.perf_points.extend(run_perf_analyzer(
                scenario, grpc_url, out_csv=out / f"{scenario.name}.csv",
                input_images=config.input_images, divergence_factor=config.divergence_factor))
        except PerfAnalyzerError as e:  # one unstable scenario must not void the whole run
            collected.notes.append(f"perf_analyzer {scenario.name}: no result: "
                                   f"{str(e).splitlines()[0]}")
    for scenario in config.perf:
        if scenario.workload.value not in plan.profiled_workloads or scenario.batch_images != 1:
            continue
        log.info("perf_analyzer: %s, each step", scenario.name)
        try:
            profile = profile_pipeline(repository, scenario, grpc_url,
                                       out_dir=out / scenario.name,
                                       input_images=config.input_images,
                                       divergence_factor=config.divergence_factor)
        except PerfAnalyzerError as e:
            collected.notes.append(f"perf_analyzer {scenario.name} per-step profile: no "
                                   f"result: {str(e).splitlines()[0]}")
            continue
        collected.perf_points.extend(profile.ensemble + profile.in_ensemble + profile.steps)


def run_benchmarks(plan: BenchPlan, *, spec_path: Path, out_root: Path,
                   work: Path, on_phase: Callable[[str], None] | None = None,
                   overlay: SpecOverlay | None = None) -> Path:
    """Measure everything in `plan` and write the report; returns the run directory.

    `overlay` (the serving settings `tritonkit tune` measured) applies to every system built
    from the spec: the Triton variants start from it, the peers use the same models."""
    phase = on_phase or (lambda text: log.info("%s", text))
    started_at = datetime.now(timezone.utc)
    started = time.monotonic()
    spec = load_spec(spec_path, overlay=overlay)
    settings = load_scenarios(plan.scenarios).load_test
    load = _Load(concurrencies=settings.concurrency, duration_s=settings.duration_s,
                 warmup_s=settings.warmup_s, images_per_request=settings.batch_images,
                 peers=settings.peers)
    workloads = [load_workload(name, count=64) for name in plan.workloads]
    collected = _Collected()
    if overlay is not None:
        collected.notes.append(f"serving settings from {overlay.source} (tritonkit tune)")
    phase("building the repository")
    base = v.build_variant(spec, v.DEFAULT, tuple(w.pipeline for w in workloads),
                           work / "reference")
    for workload in workloads:
        phase(f"{workload.name.value}: in-process limit")
        _limits(base, workload, plan, load, collected)
        collected.profile.append(profile_steps(base, workload))
        if load.peer_shapes(Peer.FASTAPI):
            phase(f"{workload.name.value}: FastAPI peer")
            peer_log = work / f"peer-{workload.name.value}.log"
            with serve_peer(base, workload.pipeline, log_path=peer_log) as peer:
                _measure_http(PEER, peer.infer_url, workload, load, collected,
                              images_per_request=load.peer_shapes(Peer.FASTAPI))
    if load.peer_shapes(Peer.PYTRITON):
        _pytriton(base, workloads, load=load, work=work, collected=collected, phase=phase)
    for variant in plan.variants:
        phase(f"{variant.label}")
        _triton(spec, variant, workloads, plan=plan, load=load, work=work, collected=collected)
    summary = summarize(collected)
    collected.profile.insert(0, ceilings(collected, summary))
    results = BenchResults(
        started_at=started_at,
        machine={"cores": str(os.cpu_count()), "python": platform.python_version(),
                 "machine": platform.machine(), "processor": platform.processor() or "?",
                 "seconds": f"{time.monotonic() - started:.0f}"},
        series=tuple(collected.series), limits=tuple(collected.limits),
        perf_points=tuple(collected.perf_points), summary=summary,
        notes=tuple(collected.notes), profile=tuple(collected.profile))
    return write_report(results, out_root)
