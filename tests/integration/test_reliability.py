"""Fast reliability cases against real local Tritons: the bad-input corpus over HTTP and gRPC
(on the session server), a stub kill and a version swap (on their own explicit-control server),
and the safe defaults. `make reliability` runs the long scenarios."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from harness.reliability.corpus import corpus
from harness.reliability.corpus_runner import CorpusRunner
from harness.reliability.defined_results import defined_result_cases, run_defined_cases
from harness.reliability.extension_corpus import extension_cases, run_extension_cases
from harness.reliability.malformed_under_load import malformed_under_load
from harness.reliability.safe_defaults import loopback_problems, scan_unsafe_loading
from harness.reliability.stub_kill import kill_stub_under_load
from harness.reliability.stub_watchdog import StubWatchdog
from harness.reliability.targets import load_targets
from harness.reliability.version_swap import load_broken_model, swap_versions_under_load
from harness.reliability.wire import Protocol, WireClient
from tritonkit.repository.config_io import CONFIG_NAME, read_config, write_config
from tritonkit.server.local_triton import LocalTriton, ServerURLs

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]
DIGITS_MODELS = ("digits", "digits_preprocess", "digits_classifier", "digits_postprocess")


@pytest.mark.parametrize("protocol", list(Protocol))
def test_bad_input_corpus(example_repository: Path, triton: ServerURLs,
                          protocol: Protocol) -> None:
    targets = load_targets(example_repository)
    # Every model's generic and kind cases (resnet shares digits' code paths but costs more).
    cases = [c for c in corpus(targets) if not c.model.startswith("resnet")]
    assert len({c.case for c in cases}) >= 30
    with WireClient(http_url=triton.http, grpc_url=triton.grpc) as client:
        runner = CorpusRunner(client, targets, collateral=1)
        try:
            result = runner.run(cases, (protocol,))
        finally:
            runner.close()
    unclear = [(o.model, o.case, o.status, o.message[:120], o.problem) for o in result.unclear]
    assert not unclear
    assert result.server_crashes == 0
    assert result.collateral_failures == 0
    step_cases = [o for o in result.outcomes if o.origin.value == "step"]
    assert step_cases and all(o.status in ("400", "INVALID_ARGUMENT") for o in step_cases)


def test_protocol_extensions_never_end_the_server(example_repository: Path,
                                                 triton: ServerURLs) -> None:
    """Classification counts, binary-data flags, request parameters of every JSON type,
    priority, timeout and sequence parameters on every output of the digits and detection
    pipelines and their models, over both protocols: the server stays live after each."""
    wanted = {"digits", "digits_preprocess", "digits_classifier", "detection",
              "detection_postprocess"}
    targets = [t for t in load_targets(example_repository) if t.name in wanted]
    cases = extension_cases(targets)
    with WireClient(http_url=triton.http, grpc_url=triton.grpc) as client:
        result = run_extension_cases(client, cases, list(Protocol), http_url=triton.http)
    assert result.server_deaths == 0
    sent = [o for o in result.outcomes if o.sent]
    assert len(sent) > 300
    by_case = {(o.model, o.output, o.case, o.protocol): o for o in result.outcomes}
    # the classification extension on the classifier's probabilities answers top-k
    top3 = by_case[("digits", "PROBABILITIES", "classification_1", Protocol.GRPC)]
    assert top3.status == "OK"
    # this server (2.51) dies of classification on a BYTES output: recorded, never sent
    crash = by_case[("detection", "LABELS", "classification_1", Protocol.HTTP)]
    assert not crash.sent and crash.note.startswith("known crash")
    assert {o.output for o in result.known_crashes} >= {"LABELS"}
    # request-level parameters of every JSON type get an answer, never silence
    assert all(o.status for o in result.outcomes)


@pytest.mark.parametrize(("model", "protocol"), [
    ("digits_preprocess", Protocol.HTTP), ("digits", Protocol.GRPC), ("detection", Protocol.GRPC)])
def test_malformed_bytes_never_fails_valid_requests_under_load(
        example_repository: Path, triton: ServerURLs, model: str, protocol: Protocol) -> None:
    """A length prefix claiming more bytes than sent, sent over and over while other clients
    keep the same step (directly or through an ensemble) busy: the batch guard keeps every
    valid request's batch whole. Without it ~1% of the valid requests failed here."""
    targets = {t.name: t for t in load_targets(example_repository)}
    (case,) = [c for c in corpus((targets[model],)) if c.case == "bytes_length_prefix_too_long"]
    result = malformed_under_load(triton.http, triton.grpc, targets[model], case, protocol,
                                  seconds=4.0)
    assert result.valid_sent > 200 and result.malformed_sent > 50  # they did meet
    assert result.malformed_accepted == 0
    assert (result.valid_failed, result.failure_messages) == (0, {})


@pytest.mark.parametrize("protocol", list(Protocol))
def test_defined_result_edge_cases(example_repository: Path, triton: ServerURLs,
                                   protocol: Protocol) -> None:
    """Empty and very long texts, images without objects: valid input, defined answers."""
    cases = [c for c in defined_result_cases(load_targets(example_repository))
             if not c.model.startswith("resnet")]
    assert {c.case for c in cases} == {"text_empty", "text_very_long", "image_without_objects"}
    with WireClient(http_url=triton.http, grpc_url=triton.grpc) as client:
        outcomes = run_defined_cases(client, cases, (protocol,))
    assert [(o.model, o.case, o.problem) for o in outcomes if not o.passed] == []


@pytest.fixture(scope="module")
def explicit_server(example_repository: Path,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    repo = tmp_path_factory.mktemp("explicit") / "model_repository"
    shutil.copytree(example_repository, repo)
    with LocalTriton(repo, model_control="explicit", load_models=["digits"],
                     extra_args=["--exit-timeout-secs=5"],
                     log_path=repo.parent / "tritonserver.log", startup_timeout_s=240) as server:
        yield server


def test_stub_kill_recovers(explicit_server: LocalTriton) -> None:
    with StubWatchdog(explicit_server, DIGITS_MODELS[1:]) as watchdog:
        result = kill_stub_under_load(explicit_server, concurrency=4, before_s=1.0, after_s=6.0)
    assert result.server_live
    assert result.wrong_answers == 0
    assert result.recovered, result
    assert watchdog.reloads and watchdog.reloads[0].status == 200
    assert result.new_stub_pids and result.killed_pid not in result.new_stub_pids


def test_version_swap_and_broken_model(explicit_server: LocalTriton) -> None:
    swapped = swap_versions_under_load(explicit_server, concurrency=4)
    assert swapped.failed_requests == 0 and swapped.requests > 0
    assert swapped.smoke_test_ok and swapped.served_versions_after == ("2",)
    broken = load_broken_model(explicit_server)
    assert broken.load_failed and "no callable 'no_such_function'" in broken.reason
    assert broken.others_ready and broken.pipeline_serves


def test_batch_guard_refuses_a_queue_delay(explicit_server: LocalTriton) -> None:
    """A guarded step whose config was edited to have a queue delay fails to load, saying
    why, instead of stalling or mixing batches; the server and the other models stay up."""
    name = "guarded_with_delay"
    target = explicit_server.model_repository / name
    shutil.copytree(explicit_server.model_repository / "digits_preprocess", target)
    try:
        config = read_config(target / CONFIG_NAME)
        config.name = name
        config.dynamic_batching.max_queue_delay_microseconds = 100
        write_config(config, target / CONFIG_NAME)
        client = httpclient.InferenceServerClient(explicit_server.urls.http_hostport,
                                                  network_timeout=120)
        try:
            with pytest.raises(InferenceServerException,
                               match="needs dynamic_batching max_queue_delay_microseconds 0"):
                client.load_model(name)
            assert client.is_server_live() and client.is_model_ready("digits")
        finally:
            client.close()
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_safe_defaults() -> None:
    assert loopback_problems() == []
    assert scan_unsafe_loading(REPO_ROOT) == []
