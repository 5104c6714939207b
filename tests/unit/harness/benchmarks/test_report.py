"""The benchmark report: files of one run, the latest pointer, the summary and compare()."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image

from harness.benchmarks.errors import BenchmarkError
from harness.benchmarks.hey_driver import LoadResult
from harness.benchmarks.perf_analyzer import LatencyBreakdown, PerfPoint, StepLatency
from harness.benchmarks.report import (
    BenchResults,
    LimitResult,
    ProfileSection,
    RequestShape,
    Summary,
    SystemSeries,
    compare,
    format_regressions,
    load_summary,
    markdown_table,
    update_latest,
    write_report,
)
from harness.benchmarks.scenarios import LoadMode, Protocol

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SYSTEMS = ("fastapi", "triton", "triton-nobatch")
WORKLOADS = ("light", "heavy")
STARTED = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


def perf_point(concurrency: int, *, diverged: bool) -> PerfPoint:
    breakdown = LatencyBreakdown(client_send_us=12.0, network_server_send_recv_us=40.0,
                                 server_queue_us=300.0, server_compute_input_us=20.0,
                                 server_compute_infer_us=900.0, server_compute_output_us=15.0,
                                 client_recv_us=8.0)
    return PerfPoint(scenario="light-grpc", model="digits", protocol=Protocol.GRPC,
                     load_mode=LoadMode.CONCURRENCY, load=float(concurrency), batch_images=1,
                     throughput_infer_s=812.4 * concurrency, requests_per_s=812.4 * concurrency,
                     latency_avg_us=1400.0, latency_p50_us=1300.0, latency_p90_us=2000.0,
                     latency_p95_us=2500.0, latency_p99_us=4100.0, breakdown=breakdown,
                     server=None, delayed_requests_percent=0.0,
                     client_server_ratio=2.6 if diverged else 1.1, diverged=diverged)


STEP = StepLatency(scenario="light-grpc", ensemble="digits", step="digits_preprocess", load=4.0,
                   request_latency_us=510.0, overhead_us=20.0, queue_us=90.0,
                   compute_input_us=10.0, compute_infer_us=380.0, compute_output_us=10.0,
                   inference_count=4000, execution_count=1000, avg_batch_rows=4.0)


def point(concurrency: int, rps: float, p99_ms: float, *, errors: int = 0) -> LoadResult:
    return LoadResult(system=None, concurrency=concurrency, requests=int(rps * 2),
                      duration_s=2.0, throughput_rps=rps, p50_ms=p99_ms / 3,
                      p90_ms=p99_ms / 2, p95_ms=p99_ms / 1.5, p99_ms=p99_ms,
                      max_ms=p99_ms * 1.2, errors=errors)


def make_series(system: str, workload: str, shape: RequestShape, speed: float) -> SystemSeries:
    return SystemSeries(system=system, workload=workload, shape=shape, points=tuple(
        point(c, speed * c / (1 + c / 4), 2.0 * c / speed * 100) for c in (1, 4, 8)))


def make_results(*, started_at: datetime = STARTED, triton_speed: float = 300.0,
                 summary: Summary | None = None) -> BenchResults:
    speeds = {"fastapi": 100.0, "triton": triton_speed, "triton-nobatch": 150.0}
    series = tuple(make_series(system, workload, shape, speeds[system])
                   for workload in WORKLOADS for shape in RequestShape for system in SYSTEMS)
    limits = tuple(LimitResult(workload=w, shape=s, images_per_s=900.0, batch_size=16)
                   for w in WORKLOADS for s in RequestShape)
    perf = (perf_point(1, diverged=False), perf_point(4, diverged=True), STEP)
    return BenchResults(
        started_at=started_at,
        machine={"cpu": "test cpu", "cores": "2"},
        series=series,
        limits=limits,
        perf_points=perf,
        summary=summary or Summary(heavy_triton_vs_limit=0.85, heavy_triton_vs_fastapi=1.2,
                                   light_triton_vs_fastapi=2.5, heavy_triton_vs_pytriton=1.1,
                                   light_triton_vs_pytriton=1.3, heavy_dynamic_batching_gain=2.1,
                                   heavy_batching_ceiling=1.15, light_p99_ms_triton=3.0,
                                   light_p99_ms_fastapi=7.5),
        notes=("smoke windows",),
        profile=(ProfileSection(title="digits_preprocess", text="PNG decode dominates.",
                                columns=("step", "ms per image"),
                                rows=(("decode", 0.21), ("resize", 0.05))),),
    )


# --------------------------------------------------------------------------- write_report


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One report written for the tests that only read it."""
    return write_report(make_results(), tmp_path_factory.mktemp("bench"))


def test_write_report_writes_every_file(written: Path) -> None:
    run_dir = written
    assert run_dir.name == "20250304T050607Z"
    for name in ("report.md", "summary.json", "raw/limits.csv", "raw/perf_analyzer.csv",
                 "raw/perf_steplatency.csv"):
        assert (run_dir / name).is_file(), name
    csvs = sorted(p.name for p in (run_dir / "raw").glob("*__*__*.csv"))
    assert len(csvs) == len(WORKLOADS) * len(RequestShape) * len(SYSTEMS)
    assert "light__online__triton-nobatch.csv" in csvs
    plots = sorted(p.name for p in (run_dir / "plots").iterdir())
    assert plots == ["heavy_offline.png", "heavy_online.png", "light_offline.png",
                     "light_online.png"]
    for plot in plots:
        path = run_dir / "plots" / plot
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as image:
            image.verify()
            assert image.size == (800, 550)


def test_series_csv_holds_the_points(written: Path) -> None:
    results, run_dir = make_results(), written
    with (run_dir / "raw" / "heavy__offline__fastapi.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    expected = next(s for s in results.series if s.file_stem == "heavy__offline__fastapi")
    assert list(rows[0]) == ["concurrency", "rps", "p50_ms", "p90_ms", "p95_ms", "p99_ms",
                             "errors"]
    assert [int(r["concurrency"]) for r in rows] == [1, 4, 8]
    for row, p in zip(rows, expected.points, strict=True):
        assert float(row["rps"]) == pytest.approx(p.throughput_rps, abs=1e-3)
        assert float(row["p99_ms"]) == pytest.approx(p.p99_ms, abs=1e-3)
        assert int(row["errors"]) == 0


def test_summary_json_has_exactly_the_summary_keys_as_numbers(written: Path) -> None:
    run_dir = written
    data = json.loads((run_dir / "summary.json").read_text())
    assert set(data) == {"heavy_triton_vs_limit", "heavy_triton_vs_fastapi",
                         "light_triton_vs_fastapi", "heavy_triton_vs_pytriton",
                         "light_triton_vs_pytriton", "heavy_dynamic_batching_gain",
                         "heavy_batching_ceiling", "light_p99_ms_triton",
                         "light_p99_ms_fastapi"}
    assert all(type(v) is float for v in data.values())
    assert data["light_p99_ms_fastapi"] == 7.5
    assert load_summary(run_dir) == make_results().summary


def test_report_md_shows_workloads_systems_plots_and_targets(written: Path) -> None:
    run_dir = written
    text = (run_dir / "report.md").read_text()
    for workload in WORKLOADS:
        assert f"## Workload: {workload}" in text
    for system in SYSTEMS:
        assert f"| {system} | 8 |" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == 4
    assert all((run_dir / link).is_file() for link in links)
    assert "In-process limit: **900 images/s** at batch size 16." in text
    # summary with targets: 1.2 misses >= 1.5, the others pass
    assert "| heavy_triton_vs_fastapi | 1.20 | >= 1.05 (peak to peak) | pass |" in text
    assert "| heavy_triton_vs_limit | 0.850 | >= 0.95 (Triton's peak) | MISS |" in text
    assert "| light_p99_ms_triton | 3.00 | <= light_p99_ms_fastapi | pass |" in text
    assert ("| heavy_dynamic_batching_gain | 2.10 | >= 0.9 x the in-process batching ceiling "
            "1.15 = 1.03 | pass |") in text
    assert "6 of 7 targets met." in text
    assert ("| heavy_batching_ceiling | 1.15 | reference for heavy_dynamic_batching_gain "
            "| - |") in text
    # perf_analyzer breakdown, the diverged point flagged, per-step records, profile and notes
    assert ("| light-grpc | digits | grpc | c=4 | 1 | 3250 | 1.30 | 4.10 | 12.0 | 40.0 | 300 "
            "| 20.0 | 900 | 15.0 | 8.00 | 2.60 | **yes** |") in text
    assert "| c=1 |" in text and "| 1.10 | no |" in text
    assert "1 point(s) diverged: light-grpc digits at c=4 (x2.60)." in text
    assert "### StepLatency" in text and "| digits_preprocess | 4.00 | 510 |" in text
    assert "### digits_preprocess" in text and "| decode | 0.210 |" in text
    assert "- smoke windows" in text


def test_offline_images_per_second_use_16_images_per_request(written: Path) -> None:
    text = (written / "report.md").read_text()
    offline = make_series("fastapi", "light", RequestShape.OFFLINE, 100.0).points[0]
    assert offline.throughput_rps == 80.0
    assert "| fastapi | 1 | 80.0 | 1280 |" in text


def test_latest_follows_the_newest_run(tmp_path: Path) -> None:
    first = write_report(make_results(), tmp_path)
    latest = tmp_path / "latest"
    assert latest.is_symlink() and latest.resolve() == first.resolve()
    assert not Path(str(latest.readlink())).is_absolute()  # relocatable

    second = write_report(make_results(started_at=STARTED + timedelta(hours=1)), tmp_path)
    assert second.name == "20250304T060607Z"
    assert latest.resolve() == second.resolve()
    assert (latest / "summary.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_same_second_runs_get_distinct_directories(tmp_path: Path) -> None:
    first, second = write_report(make_results(), tmp_path), write_report(make_results(), tmp_path)
    assert first != second and second.name == "20250304T050607Z-1"


def test_latest_copy_fallback_and_back_to_a_symlink(tmp_path: Path) -> None:
    run_dir = write_report(make_results(), tmp_path)
    latest = update_latest(tmp_path, run_dir, use_symlink=False)
    assert latest.is_dir() and not latest.is_symlink()
    assert (latest / "summary.json").read_bytes() == (run_dir / "summary.json").read_bytes()
    assert (latest / "plots" / "light_online.png").is_file()

    update_latest(tmp_path, run_dir)
    assert latest.is_symlink() and latest.resolve() == run_dir.resolve()


# --------------------------------------------------------------------------- data model


def test_summary_targets_and_validation() -> None:
    summary = Summary(heavy_triton_vs_limit=0.96, heavy_triton_vs_fastapi=1.04,
                      light_triton_vs_fastapi=1.5, heavy_triton_vs_pytriton=1.2,
                      light_triton_vs_pytriton=0.9, heavy_dynamic_batching_gain=1.0,
                      heavy_batching_ceiling=1.2, light_p99_ms_triton=9.0,
                      light_p99_ms_fastapi=8.0)
    met = {t.key: t.met for t in summary.targets()}
    # the targets: 1.5 light, 1.05 / 0.95 heavy, 0.9 of the batching ceiling (1.08 here),
    # p99 no worse than the peer's, ahead of PyTriton
    assert met == {"heavy_triton_vs_limit": True, "heavy_triton_vs_fastapi": False,
                   "light_triton_vs_fastapi": True, "heavy_dynamic_batching_gain": False,
                   "light_p99_ms_triton": False, "light_triton_vs_pytriton": False,
                   "heavy_triton_vs_pytriton": True}
    assert {t.key: t.met for t in dataclasses.replace(
        summary, heavy_dynamic_batching_gain=1.08).targets()}["heavy_dynamic_batching_gain"]
    assert json.loads(summary.to_json())["heavy_dynamic_batching_gain"] == 1.0
    with pytest.raises(BenchmarkError, match="light_p99_ms_triton must be finite"):
        dataclasses.replace(summary, light_p99_ms_triton=float("nan"))
    with pytest.raises(BenchmarkError, match=r"missing \['light_p99_ms_fastapi'\]"):
        Summary.from_mapping({k: 1.0 for k in Summary.keys()[:-1]}, source="s.json")
    with pytest.raises(BenchmarkError, match="s.json: summary key heavy_triton_vs_limit"):
        Summary.from_mapping({**summary.to_dict(), "heavy_triton_vs_limit": "fast"},
                             source="s.json")


def test_series_validation_and_peak() -> None:
    series = SystemSeries(system="triton", workload="light", shape="online",  # type: ignore[arg-type]
                          points=(point(8, 30.0, 9.0), point(1, 10.0, 1.0), point(4, 40.0, 3.0)))
    assert series.shape is RequestShape.ONLINE
    assert [p.concurrency for p in series.points] == [1, 4, 8]
    assert series.peak.concurrency == 4
    with pytest.raises(BenchmarkError, match="repeats a concurrency"):
        SystemSeries(system="t", workload="light", shape=RequestShape.ONLINE,
                     points=(point(1, 1.0, 1.0), point(1, 2.0, 1.0)))
    with pytest.raises(BenchmarkError, match="share workload, shape and system"):
        dataclasses.replace(make_results(), series=(series, series))


def test_markdown_table_escapes_pipes() -> None:
    assert markdown_table(["a", "b"], [["x|y", 1234.5]]) == "| a | b |\n|---|---|\n| x\\|y | 1234 |"


# --------------------------------------------------------------------------- compare


def test_compare_passes_an_equal_run(tmp_path: Path) -> None:
    saved = write_report(make_results(), tmp_path / "saved")
    current = write_report(make_results(), tmp_path / "current")
    assert compare(current, saved) == []
    assert format_regressions([]) == "no regressions"


def test_compare_flags_lower_throughput_and_higher_p99(tmp_path: Path) -> None:
    saved = write_report(make_results(), tmp_path / "saved")
    worse_summary = dataclasses.replace(make_results().summary, light_triton_vs_fastapi=2.0,
                                        light_p99_ms_triton=3.2)
    current = write_report(make_results(triton_speed=240.0, summary=worse_summary),
                           tmp_path / "current")
    regressions = compare(current, saved, tolerance=0.10)
    by_metric = {r.metric: r for r in regressions}

    ratio = by_metric["summary.light_triton_vs_fastapi"]
    assert (ratio.old, ratio.new) == (2.5, 2.0)
    assert ratio.change_pct == pytest.approx(-20.0)
    assert "summary.light_p99_ms_triton" not in by_metric  # +6.7 % is within 10 %
    peak = by_metric["light/online/triton peak req/s"]
    assert peak.change_pct == pytest.approx(-20.0, abs=0.01)
    p99 = by_metric["heavy/offline/triton p99 ms at concurrency 8"]
    assert p99.change_pct == pytest.approx(25.0, abs=0.05)  # CSVs keep 3 decimals
    # the untouched systems are not flagged
    assert not [m for m in by_metric if "fastapi/" in m or "nobatch" in m]
    # 2 workloads x 2 shapes x (peak + 3 p99s) for triton, plus the summary key
    assert len(regressions) == 4 * 4 + 1

    text = format_regressions(regressions)
    assert text.startswith("17 regressions:")
    assert "summary.light_triton_vs_fastapi: 2.50 -> 2.00 (-20.0%)" in text
    # a wide enough tolerance accepts the same runs
    assert compare(current, saved, tolerance=0.3) == []


def test_compare_needs_summaries(tmp_path: Path) -> None:
    saved = write_report(make_results(), tmp_path / "saved")
    with pytest.raises(BenchmarkError, match="cannot read"):
        compare(tmp_path / "nowhere", saved)
