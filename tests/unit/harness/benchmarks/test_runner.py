"""The summary keys are taken where the issue defines them: online, at the peer's peak."""

from __future__ import annotations

import pytest

from harness.benchmarks import variants as v
from harness.benchmarks.hey_driver import LoadResult
from harness.benchmarks.report import LimitResult, RequestShape, SystemSeries
from harness.benchmarks.runner import (
    FLOOR,
    FULL,
    ONE_HOP,
    PEER,
    PYTRITON,
    SMOKE,
    _Collected,
    ceilings,
    served_pipelines,
    summarize,
)
from harness.benchmarks.workloads import Workload, WorkloadName
from tritonkit.spec import load_spec

ONLINE = RequestShape.ONLINE


def point(system: str, concurrency: int, rps: float, p99: float) -> LoadResult:
    return LoadResult(system=system, concurrency=concurrency, requests=int(rps * 10),
                      duration_s=10.0, throughput_rps=rps, p50_ms=p99 / 2, p90_ms=p99 * 0.8,
                      p95_ms=p99 * 0.9, p99_ms=p99, max_ms=p99 * 1.2, errors=0)


def series(system: str, workload: str, rows: list[tuple[int, float, float]]) -> SystemSeries:
    return SystemSeries(system=system, workload=workload, shape=ONLINE,
                        points=tuple(point(system, c, rps, p99) for c, rps, p99 in rows))


def test_summary_uses_the_peer_peak_concurrency() -> None:
    collected = _Collected()
    collected.series += [
        series(PEER, "light", [(1, 100, 1.0), (8, 400, 3.0), (16, 300, 9.0)]),
        series(v.DEFAULT.name, "light", [(1, 50, 2.0), (8, 800, 2.5), (16, 900, 4.0)]),
        series(PEER, "heavy", [(1, 10, 10.0), (8, 20, 50.0), (16, 19, 90.0)]),
        series(v.DEFAULT.name, "heavy", [(1, 9, 12.0), (8, 30, 40.0), (16, 32, 80.0)]),
        series(v.NO_BATCHING.name, "heavy", [(1, 9, 12.0), (8, 12, 70.0), (16, 12, 130.0)]),
        series(PYTRITON, "light", [(1, 80, 1.5), (8, 350, 3.5), (16, 500, 8.0)]),
        series(PYTRITON, "heavy", [(1, 8, 11.0), (8, 15, 60.0), (16, 16, 95.0)]),
    ]
    collected.limits.append(LimitResult(workload="heavy", shape=ONLINE, images_per_s=40.0))
    collected.limit_by_batch["heavy"] = {1: 30.0, 32: 40.0}
    summary = summarize(collected)
    assert summary.light_triton_vs_fastapi == pytest.approx(800 / 400)  # at c=8, not c=16
    assert summary.light_p99_ms_triton == pytest.approx(2.5)
    assert summary.light_p99_ms_fastapi == pytest.approx(3.0)
    # heavy: each system's own peak (Triton 32 at c=16, the peer 20 at c=8)
    assert summary.heavy_triton_vs_fastapi == pytest.approx(32 / 20)
    assert summary.heavy_triton_vs_limit == pytest.approx(32 / 40)
    assert summary.heavy_batching_ceiling == pytest.approx(40 / 30)
    assert summary.heavy_dynamic_batching_gain == pytest.approx(32 / 12)  # highest common c
    assert summary.light_triton_vs_pytriton == pytest.approx(900 / 500)  # at PyTriton's peak
    assert summary.heavy_triton_vs_pytriton == pytest.approx(32 / 16)

    # the ceilings come from the same run: limit / peer, best batch / batch 1, the
    # pipeline's Python step alone / peer, a no-op Python step alone (the floor) / peer
    collected.series.append(series(ONE_HOP, "light", [(1, 90, 1.0), (8, 600, 2.0)]))
    collected.series.append(series(FLOOR, "light", [(1, 120, 1.0), (8, 1000, 2.0)]))
    section = ceilings(collected, summary)
    assert [row[:3] for row in section.rows] == [
        ("heavy_triton_vs_fastapi", 1.6, 2.0),
        ("heavy_triton_vs_pytriton", 2.0, 2.5),
        ("heavy_dynamic_batching_gain", pytest.approx(2.667, abs=1e-3),
         pytest.approx(1.333, abs=1e-3)),
        ("light_triton_vs_fastapi", 2.0, 1.5),
        ("light_triton_vs_fastapi", 2.0, 2.5),
        ("light_triton_vs_pytriton", 1.8, 1.2),
        ("light_triton_vs_pytriton", 1.8, 2.0),
    ]


def test_variants_change_only_serving_options() -> None:
    spec = load_spec("models.yaml")
    off = v.variant_spec(spec, v.NO_BATCHING, ("digits",))
    assert {m.name for m in off.models} == {"digits_classifier"}
    assert {s.name for s in off.python_steps} == {"digits_preprocess"}
    assert all(m.serving.dynamic_batching is None for m in off.models + off.python_steps)
    shipped = spec.model("digits_classifier")
    assert off.models[0].serving.instance_group == shipped.serving.instance_group  # type: ignore[union-attr]
    one = v.variant_spec(spec, v.ONE_INSTANCE, ("digits",), cores=2)
    assert one.models[0].serving.instance_group.count == 1
    assert one.models[0].onnxruntime.intra_op_threads == 2  # 1 instance x 2 threads = 2 cores
    assert [s.serving for s in one.python_steps] == [
        spec.python_step(s.name).serving for s in one.python_steps]  # type: ignore[union-attr]
    assert one.models[0].onnx == shipped.onnx  # type: ignore[union-attr]
    default = v.variant_spec(spec, v.DEFAULT, ("digits",))
    assert default.models[0].serving == shipped.serving  # type: ignore[union-attr]
    assert off.sha256 != spec.sha256 != one.sha256


def test_only_the_default_variant_serves_the_perf_analyzer_only_pipelines() -> None:
    side_by_side = [Workload(name=WorkloadName.LIGHT, pipeline="digits", items=(b"x",)),
                    Workload(name=WorkloadName.HEAVY, pipeline="resnet", items=(b"y",))]
    assert served_pipelines(FULL, v.DEFAULT, side_by_side) == (
        "digits", "resnet", "detection", "embeddings")
    assert served_pipelines(FULL, v.NO_BATCHING, side_by_side) == ("digits", "resnet")
    assert served_pipelines(SMOKE, v.DEFAULT, side_by_side) == ("digits", "resnet")
    assert FULL.workloads == SMOKE.workloads == ("light", "heavy")  # hey/peer/limit unchanged
    assert {"detection", "embeddings"} <= set(FULL.profiled_workloads)
