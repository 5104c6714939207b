"""Fast reliability cases against real local Tritons: the bad-input corpus over HTTP and gRPC
(on the session server), a stub kill and a version swap (on their own explicit-control server),
and the safe defaults. `make reliability` runs the long scenarios."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from build_scripts.local_server.local_triton import LocalTriton, ServerURLs
from reliability.corpus import corpus
from reliability.corpus_runner import CorpusRunner
from reliability.defined_results import defined_result_cases, run_defined_cases
from reliability.safe_defaults import loopback_problems, scan_unsafe_loading
from reliability.stub_kill import kill_stub_under_load
from reliability.stub_watchdog import StubWatchdog
from reliability.targets import load_targets
from reliability.version_swap import load_broken_model, swap_versions_under_load
from reliability.wire import Protocol, WireClient

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
    # Collateral failures are measured by `make reliability`, not asserted here: the batch
    # guard keeps a direct step's batch whole (test below), but through an ensemble a valid
    # request was still seen failing next to a too-long BYTES prefix (2 of ~60, open).
    step_cases = [o for o in result.outcomes if o.origin.value == "step"]
    assert step_cases and all(o.status in ("400", "INVALID_ARGUMENT") for o in step_cases)


def test_malformed_bytes_never_fails_its_batch(example_repository: Path,
                                              triton: ServerURLs) -> None:
    """A length prefix claiming more bytes than sent, next to valid requests to the same
    batched Python step, many times over: the batch guard keeps every valid one whole."""
    targets = load_targets(example_repository)
    (case,) = [c for c in corpus(targets) if c.model == "digits_preprocess"
               and c.case == "bytes_length_prefix_too_long"]
    with WireClient(http_url=triton.http, grpc_url=triton.grpc) as client:
        runner = CorpusRunner(client, targets, collateral=4)
        try:
            result = runner.run([case] * 15, (Protocol.HTTP,))
        finally:
            runner.close()
    assert result.clear_errors == result.cases == 15
    assert sum(o.collateral_sent for o in result.outcomes) == 60
    assert result.collateral_failures == 0


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


def test_safe_defaults() -> None:
    assert loopback_problems() == []
    assert scan_unsafe_loading(REPO_ROOT) == []
