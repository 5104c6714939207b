"""perf_analyzer wrapper: input data, command line, and parsing of real perf_analyzer output.

The files under data/ were written by perf_analyzer 2.50.0 against the local Triton serving
the digits repository (commands as built by perf_command):
- digits_grpc_concurrency: the `digits` ensemble, gRPC, concurrency 1:2, batch 1;
- digits_http_request_rate: the ensemble over HTTP at 100 and 200 requests/s, batch 4;
- postprocess_grpc_percentile: `digits_postprocess` alone with --percentile 50 (no Avg column).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import socket
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.benchmarks.errors import PerfAnalyzerError
from harness.benchmarks.perf_analyzer import (
    StepInputs,
    build_points,
    composing_stats,
    divergence,
    host_port,
    parse_report,
    perf_command,
    run_perf_analyzer,
)
from harness.benchmarks.scenarios import (
    LoadRange,
    MeasurementMode,
    PerfScenario,
    Protocol,
    SharedMemory,
)
from harness.benchmarks.workloads import WorkloadName, load_workload
from tritonkit.errors import ToolkitError
from tritonkit.tuning import (
    LoadMode,
    PerfAnalyzer,
    find_perf_analyzer,
    input_data_document,
    input_rows_document,
    parse_csv,
    write_input_data,
    write_input_rows,
)

DATA = Path(__file__).parent / "data"


def scenario(**changes: object) -> PerfScenario:
    base = PerfScenario(name="light_online", workload=WorkloadName.LIGHT, model="digits",
                        concurrency=(1, 2), measurement_interval_ms=1000,
                        stability_percentage=50, max_trials=6)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def fixture(name: str) -> tuple[str, str]:
    return ((DATA / f"{name}.csv").read_text(encoding="utf-8"),
            (DATA / f"{name}.log").read_text(encoding="utf-8"))


def value_after(command: list[str], flag: str) -> str:
    assert command.count(flag) == 1, f"{flag} appears {command.count(flag)} times"
    return command[command.index(flag) + 1]


# --------------------------------------------------------------------------- input data


def test_bytes_rows_are_length_prefixed_b64_one_entry_per_row() -> None:
    workload = load_workload("light", count=3)
    document = input_data_document(workload.samples())
    assert list(document) == ["data"] and len(document["data"]) == 3
    for entry, image in zip(document["data"], workload.images, strict=True):
        tensor = entry["IMAGE"]
        assert tensor["shape"] == [1]
        raw = base64.b64decode(tensor["content"]["b64"])
        assert raw == struct.pack("<I", len(image)) + image


def test_several_bytes_elements_in_one_row_are_serialized_in_order() -> None:
    row = np.array([[b"ab", b"", b"xyz"]], dtype=object)
    raw = base64.b64decode(input_data_document({"T": row})["data"][0]["T"]["content"]["b64"])
    assert raw == b"\x02\x00\x00\x00ab" + b"\x00\x00\x00\x00" + b"\x03\x00\x00\x00xyz"


def test_numeric_rows_are_little_endian_raw_bytes_with_their_shape() -> None:
    pixels = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 1, 8, 8) / 7
    logits = np.arange(20, dtype=np.float32).reshape(2, 10)
    document = input_data_document({"pixels": pixels, "LOGITS": logits})
    second = document["data"][1]
    assert second["pixels"]["shape"] == [1, 8, 8] and second["LOGITS"]["shape"] == [10]
    decoded = np.frombuffer(base64.b64decode(second["pixels"]["content"]["b64"]), dtype="<f4")
    np.testing.assert_array_equal(decoded.reshape(1, 8, 8), pixels[1])
    big_endian = pixels.astype(">f4")
    again = input_data_document({"pixels": big_endian})["data"][1]["pixels"]["content"]["b64"]
    assert again == second["pixels"]["content"]["b64"]


def test_input_data_rejects_ragged_or_flat_samples() -> None:
    with pytest.raises(PerfAnalyzerError, match="same, non-zero number of rows"):
        input_data_document({"A": np.zeros((2, 1)), "B": np.zeros((3, 1))})
    with pytest.raises(PerfAnalyzerError, match=r"got shape \[4\]"):
        input_data_document({"A": np.zeros(4)})
    with pytest.raises(PerfAnalyzerError, match="at least one tensor"):
        input_data_document({})


def test_write_input_data_is_json_perf_analyzer_reads(tmp_path: Path) -> None:
    samples = load_workload("light", count=4).samples()
    path = write_input_data(samples, tmp_path / "sub" / "input.json")
    assert json.loads(path.read_text()) == input_data_document(samples)


def _bytes_elements(b64: str) -> list[bytes]:
    """perf_analyzer's BYTES layout back to elements: uint32 LE length + bytes, repeated."""
    raw = base64.b64decode(b64)
    elements: list[bytes] = []
    while raw:
        (length,) = struct.unpack("<I", raw[:4])
        elements.append(raw[4:4 + length])
        raw = raw[4 + length:]
    return elements


def test_embeddings_input_data_is_one_utf8_sentence_per_entry() -> None:
    workload = load_workload("embeddings", count=6)
    document = input_data_document(workload.samples())
    assert len(document["data"]) == 6
    for entry, sentence in zip(document["data"], workload.items, strict=True):
        assert list(entry) == ["TEXT"] and entry["TEXT"]["shape"] == [1]
        (element,) = _bytes_elements(entry["TEXT"]["content"]["b64"])
        assert element == sentence
        assert element.decode("utf-8").strip()  # strict UTF-8, a non-empty sentence


def test_detection_input_data_entries_decode_as_the_demo_pngs() -> None:
    workload = load_workload("detection", count=3)
    document = input_data_document(workload.samples())
    for entry, png in zip(document["data"], workload.items, strict=True):
        assert list(entry) == ["IMAGE"] and entry["IMAGE"]["shape"] == [1]
        (element,) = _bytes_elements(entry["IMAGE"]["content"]["b64"])
        assert element == png
        with Image.open(io.BytesIO(element)) as image:
            image.load()
            assert image.mode == "RGB" and min(image.size) > 0


# Token rows as the tokenizer emits them for two sentences of different length (int64).
SHORT_IDS = np.array([101, 7592, 2088, 102], dtype=np.int64)
LONG_IDS = np.array([101, 1996, 2272, 2001, 2307, 1012, 102], dtype=np.int64)


def token_row(ids: np.ndarray) -> dict[str, np.ndarray]:
    return {"input_ids": ids, "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids)}


def test_token_rows_of_their_own_length_keep_int64_values_and_shape() -> None:
    document = input_rows_document([token_row(SHORT_IDS), token_row(LONG_IDS)])
    first, second = document["data"]
    assert list(first) == ["input_ids", "attention_mask", "token_type_ids"]
    assert first["input_ids"]["shape"] == [4] and second["input_ids"]["shape"] == [7]
    ids = np.frombuffer(base64.b64decode(second["input_ids"]["content"]["b64"]), dtype="<i8")
    np.testing.assert_array_equal(ids, LONG_IDS)
    mask = np.frombuffer(base64.b64decode(first["attention_mask"]["content"]["b64"]),
                         dtype="<i8")
    np.testing.assert_array_equal(mask, [1, 1, 1, 1])


def test_input_rows_reject_mismatched_scalar_or_empty_rows() -> None:
    with pytest.raises(PerfAnalyzerError, match="row 1 has inputs"):
        input_rows_document([token_row(SHORT_IDS), {"input_ids": SHORT_IDS}])
    with pytest.raises(PerfAnalyzerError, match="a scalar"):
        input_rows_document([{"x": np.int64(3) * np.ones(())}])
    with pytest.raises(PerfAnalyzerError, match="at least one row"):
        input_rows_document([])


def test_step_inputs_stack_equal_rows_and_keep_ragged_rows_apart(tmp_path: Path) -> None:
    equal = StepInputs(model="m", rows=(token_row(SHORT_IDS), token_row(SHORT_IDS + 1)))
    assert not equal.ragged
    assert equal.inputs["input_ids"].shape == (2, 4)
    # stacked or row by row: the same perf_analyzer input data
    assert input_data_document(equal.inputs) == input_rows_document(equal.rows)
    ragged = StepInputs(model="text_encoder", rows=(token_row(SHORT_IDS), token_row(LONG_IDS)))
    assert ragged.ragged
    with pytest.raises(PerfAnalyzerError, match="text_encoder: rows differ in shape"):
        _ = ragged.inputs
    path = ragged.write_input_data(tmp_path / "rows.json")
    assert json.loads(path.read_text()) == input_rows_document(ragged.rows)
    assert write_input_rows(ragged.rows, tmp_path / "again.json").read_text() == \
        path.read_text()


# --------------------------------------------------------------------------- the command


def test_command_for_a_concurrency_sweep(tmp_path: Path) -> None:
    command = perf_command(
        scenario(batch_images=16, shared_memory=SharedMemory.SYSTEM, stability_percentile=50,
                 stability_percentage=12.5),
        "grpc://127.0.0.1:8001", input_data=tmp_path / "in.json", csv_path=tmp_path / "o.csv",
        binary="/opt/pa")
    assert command[0] == "/opt/pa"
    assert value_after(command, "-m") == "digits"
    assert value_after(command, "-u") == "127.0.0.1:8001"
    assert value_after(command, "-i") == "grpc"
    assert value_after(command, "-b") == "16"
    assert value_after(command, "--input-data") == str(tmp_path / "in.json")
    assert value_after(command, "--concurrency-range") == "1:2:1"
    assert value_after(command, "--measurement-mode") == "time_windows"
    assert value_after(command, "--measurement-interval") == "1000"
    assert value_after(command, "--stability-percentage") == "12.5"
    assert value_after(command, "--percentile") == "50"
    assert value_after(command, "--max-trials") == "6"
    assert value_after(command, "--shared-memory") == "system"
    assert value_after(command, "-f") == str(tmp_path / "o.csv")
    assert "--verbose-csv" in command
    assert "--collect-metrics" not in command and "--request-rate-range" not in command


def test_command_for_a_request_rate_sweep_in_count_windows(tmp_path: Path) -> None:
    command = perf_command(
        scenario(concurrency=None, request_rate=(50.0, 100.0, 150.0), protocol=Protocol.HTTP,
                 measurement_mode=MeasurementMode.COUNT_WINDOWS, measurement_request_count=80),
        "127.0.0.1:8000", input_data=tmp_path / "in.json", csv_path=tmp_path / "o.csv")
    assert command[0] == "perf_analyzer"
    assert value_after(command, "-i") == "http"
    assert value_after(command, "--request-rate-range") == "50:150:50"
    assert value_after(command, "--measurement-request-count") == "80"
    assert "--measurement-interval" not in command and "--percentile" not in command


def test_uneven_sweeps_need_an_explicit_range(tmp_path: Path) -> None:
    uneven = scenario(concurrency=(1, 2, 4, 8))
    with pytest.raises(PerfAnalyzerError, match="sweeps 2 ranges; pass load_range"):
        perf_command(uneven, "h:1", input_data=tmp_path / "i", csv_path=tmp_path / "c")
    second = uneven.load_ranges()[1]
    command = perf_command(uneven, "h:1", input_data=tmp_path / "i", csv_path=tmp_path / "c",
                           load_range=second)
    assert second == LoadRange(start=4, end=8, step=4)
    assert value_after(command, "--concurrency-range") == "4:8:4"


def test_url_must_match_the_protocol() -> None:
    assert host_port("grpc://localhost:8001/", Protocol.GRPC) == "localhost:8001"
    assert host_port("http://127.0.0.1:8000", Protocol.HTTP) == "127.0.0.1:8000"
    assert host_port("127.0.0.1:8000", Protocol.HTTP) == "127.0.0.1:8000"
    with pytest.raises(PerfAnalyzerError, match="does not match the scenario's protocol grpc"):
        host_port("http://127.0.0.1:8000", Protocol.GRPC)
    with pytest.raises(PerfAnalyzerError, match="must be host:port"):
        host_port("http://127.0.0.1:8000/v2/models", Protocol.HTTP)


def test_the_real_binary_is_found_with_its_libraries() -> None:
    analyzer = find_perf_analyzer()
    assert analyzer.binary.name == "perf_analyzer" and analyzer.binary.is_file()
    assert any((d / "libcudart.so.12").is_file() for d in analyzer.library_dirs)
    env = analyzer.environment({"LD_LIBRARY_PATH": "/already/there", "X": "1"})
    assert env["X"] == "1"
    assert env["LD_LIBRARY_PATH"].split(":")[-1] == "/already/there"
    assert env["LD_LIBRARY_PATH"].split(":")[0] == str(analyzer.library_dirs[0])


def test_every_flag_we_emit_is_one_the_binary_documents(tmp_path: Path) -> None:
    analyzer = find_perf_analyzer()
    usage = subprocess.run([str(analyzer.binary), "--help"], env=analyzer.environment(),
                           capture_output=True, text=True, timeout=30, check=False)
    text = usage.stdout + usage.stderr
    assert "--concurrency-range" in text  # the usage text came back at all
    commands = [
        perf_command(scenario(stability_percentile=50, shared_memory=SharedMemory.SYSTEM),
                     "h:1", input_data=tmp_path / "i", csv_path=tmp_path / "c"),
        perf_command(scenario(concurrency=None, request_rate=(5.0,),
                              measurement_mode=MeasurementMode.COUNT_WINDOWS),
                     "h:1", input_data=tmp_path / "i", csv_path=tmp_path / "c"),
    ]
    flags = {arg for command in commands for arg in command if arg.startswith("-")}
    assert {f for f in flags if f.startswith("--")} <= {f for f in flags if f in text}
    for flag in flags - {f for f in flags if f.startswith("--")}:
        assert f"\t{flag} " in text or f" {flag}:" in text or f"{flag} <" in text, flag


def test_a_failing_run_raises_with_the_tail_of_its_output(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PerfAnalyzerError) as caught:
        run_perf_analyzer(scenario(concurrency=(1,)), f"grpc://127.0.0.1:{port}",
                          out_csv=tmp_path / "out.csv", input_images=4)
    message = str(caught.value)
    assert "exited with 99" in message and "failed to get model metadata" in message
    assert f"-u 127.0.0.1:{port}" in message
    assert isinstance(caught.value, ToolkitError)  # the library's driver type: the CLI catches it
    written = json.loads((tmp_path / "out.input.json").read_text())
    assert len(written["data"]) == 4  # the real images it was going to send


def test_profiling_a_step_needs_its_own_inputs(tmp_path: Path) -> None:
    with pytest.raises(PerfAnalyzerError, match="pass input_data with that model's real inputs"):
        run_perf_analyzer(scenario(model="digits_classifier"), "grpc://127.0.0.1:1",
                          out_csv=tmp_path / "o.csv", analyzer=PerfAnalyzer(binary=Path("/x")))


# --------------------------------------------------------------------------- parsing


def test_csv_of_a_concurrency_sweep() -> None:
    csv_text, _ = fixture("digits_grpc_concurrency")
    rows = parse_csv(csv_text)
    assert [(r.load_mode, r.load) for r in rows] == [(LoadMode.CONCURRENCY, 1.0),
                                                     (LoadMode.CONCURRENCY, 2.0)]
    first = rows[0].values
    assert first["throughput"] == 489.278
    assert (first["p50"], first["p90"], first["p95"], first["p99"]) == (1554, 3387, 5009, 7996)
    assert first["avg"] == 2037
    assert first["client_send_us"] == 2 and first["network_server_send_recv_us"] == 1027
    assert first["server_compute_infer_us"] == 839 and first["client_recv_us"] == 1


def test_csv_columns_are_found_by_name_not_position() -> None:
    csv_text, _ = fixture("digits_grpc_concurrency")
    table = [line.split(",") for line in csv_text.strip().splitlines()]
    order = list(reversed(range(len(table[0]))))
    shuffled = "\n".join(",".join(row[i] for i in order) for row in table)
    assert parse_csv(shuffled) == parse_csv(csv_text)


def test_a_blank_line_ends_the_table() -> None:
    csv_text, _ = fixture("digits_grpc_concurrency")
    assert parse_csv(csv_text + "\nServer metrics,x\n1,2\n") == parse_csv(csv_text)


def test_missing_columns_are_named() -> None:
    csv_text, _ = fixture("digits_grpc_concurrency")
    without_queue = csv_text.replace("Server Queue", "Something Else")
    with pytest.raises(PerfAnalyzerError, match="missing column.s. server queue"):
        parse_csv(without_queue, source="x.csv")
    with pytest.raises(PerfAnalyzerError, match="Concurrency or Request Rate"):
        parse_csv(csv_text.replace("Concurrency", "Load"))
    with pytest.raises(PerfAnalyzerError, match="empty"):
        parse_csv("")
    with pytest.raises(PerfAnalyzerError, match="line 2 is malformed"):
        parse_csv(csv_text.splitlines()[0] + "\n1,abc\n")


def test_points_join_the_csv_and_the_printed_server_statistics() -> None:
    csv_text, report = fixture("digits_grpc_concurrency")
    points = build_points(scenario(), csv_text, report)
    assert [p.load for p in points] == [1.0, 2.0]
    first = points[0]
    assert first.scenario == "light_online" and first.model == "digits"
    assert first.protocol is Protocol.GRPC and first.load_mode is LoadMode.CONCURRENCY
    assert first.throughput_infer_s == 489.278 and first.requests_per_s == 489.278
    assert first.latency_p50_us == 1554 and first.latency_p99_us == 7996
    assert first.latency_p99_us >= first.latency_p95_us >= first.latency_p50_us
    assert first.breakdown.server_compute_infer_us == 839
    assert first.server is not None
    # the ensemble's printed line counts its steps' queues; the CSV's queue column does not
    assert first.server.request_latency_us == 1747
    assert first.server.queue_us == 763 and first.server.compute_us == 1005
    assert first.breakdown.server_queue_us == 0
    assert first.server.inference_count == 1765
    assert first.client_server_ratio == pytest.approx(2037 / 1747)
    assert divergence(first) == pytest.approx(first.client_server_ratio)
    assert not first.diverged


def test_offline_points_count_images_not_requests() -> None:
    csv_text, report = fixture("digits_http_request_rate")
    points = build_points(scenario(protocol=Protocol.HTTP, concurrency=None,
                                   request_rate=(100.0, 200.0), batch_images=4),
                          csv_text, report)
    assert points[0].load_mode is LoadMode.REQUEST_RATE
    assert points[0].throughput_infer_s == 399.353
    assert points[0].requests_per_s == pytest.approx(399.353 / 4)


def test_divergence_is_flagged_when_the_client_waits_far_longer_than_the_server() -> None:
    csv_text, report = fixture("digits_http_request_rate")
    rate = scenario(protocol=Protocol.HTTP, concurrency=None, request_rate=(100.0, 200.0),
                    batch_images=4)
    slow, fast = build_points(rate, csv_text, report)
    # at 100 req/s the client saw 10915 us for 4700 us of server time
    assert slow.client_server_ratio == pytest.approx(10915 / 4700)
    assert slow.diverged
    assert fast.client_server_ratio == pytest.approx(2121 / 1884) and not fast.diverged
    lenient = build_points(rate, csv_text, report, divergence_factor=3.0)
    assert not any(p.diverged for p in lenient)


def test_without_the_average_column_the_average_is_the_breakdown_sum() -> None:
    csv_text, report = fixture("postprocess_grpc_percentile")
    (point,) = build_points(scenario(model="digits_postprocess", concurrency=(1,),
                                     stability_percentile=50), csv_text, report)
    breakdown = point.breakdown
    parts = [breakdown.client_send_us, breakdown.network_server_send_recv_us,
             breakdown.server_queue_us, breakdown.server_compute_input_us,
             breakdown.server_compute_infer_us, breakdown.server_compute_output_us,
             breakdown.client_recv_us]
    assert point.latency_avg_us == sum(parts) == 29652
    # a single model reports compute input/infer/output; they add up to its compute
    assert point.server is not None and point.server.compute_us == 15 + 284 + 107
    assert point.server.request_latency_us == 28503


def test_without_printed_statistics_the_csv_server_columns_are_used() -> None:
    csv_text, _ = fixture("digits_grpc_concurrency")
    first, _ = build_points(scenario(), csv_text, "")
    assert first.server is None
    assert first.client_server_ratio == pytest.approx(2037 / (0 + 30 + 839 + 135))


def test_the_sweep_kind_must_match_the_scenario() -> None:
    csv_text, report = fixture("digits_http_request_rate")
    with pytest.raises(PerfAnalyzerError, match="a request_rate sweep, but scenario"):
        build_points(scenario(), csv_text, report)


def test_composing_models_of_the_ensemble_per_load_level() -> None:
    _, report = fixture("digits_http_request_rate")
    steps = composing_stats(report, scenario=scenario(request_rate=(100.0, 200.0),
                                                      concurrency=None))
    assert len(steps) == 6
    assert {s.step for s in steps} == {"digits_preprocess", "digits_classifier",
                                       "digits_postprocess"}
    classifier = next(s for s in steps if s.step == "digits_classifier" and s.load == 100.0)
    assert classifier.ensemble == "digits"
    assert classifier.request_latency_us == 1813 and classifier.queue_us == 705
    assert classifier.compute_infer_us == 1029 and classifier.compute_output_us == 72
    assert classifier.inference_count == 1456 and classifier.execution_count == 338
    assert classifier.avg_batch_rows == pytest.approx(1456 / 338)


def test_report_blocks_per_level_and_delays() -> None:
    _, report = fixture("digits_http_request_rate")
    blocks = parse_report(report)
    assert [b.load for b in blocks] == [100.0, 200.0]
    assert all(len(b.composing) == 3 for b in blocks)
    delayed = report.replace(
        "    Throughput: 799.37 infer/sec",
        "    [WARNING] Perf Analyzer was not able to keep up with the desired request rate. "
        "9.12% of the requests were delayed. \n    Throughput: 799.37 infer/sec")
    assert [b.delayed_requests_percent for b in parse_report(delayed)] == [0.0, 9.12]
    _, single = fixture("postprocess_grpc_percentile")
    (block,) = parse_report(single)
    assert block.composing == () and block.server is not None
    assert math.isclose(block.server.queue_us, 28094)
