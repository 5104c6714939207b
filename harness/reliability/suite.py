"""Everything `make reliability` runs, in order, on real local Tritons:

1. build models.yaml for the local target;
2. main server (no dynamic loading): bad-input corpus, malformed BYTES under sustained
   valid load, and the defined-result edge cases (empty and very long text, images without
   objects) over HTTP and gRPC, overload, soak;
3. a second server with explicit model control: stub kill (with `StubWatchdog`), version
   swap, a model that fails to load;
4. server restarts (SIGTERM and SIGKILL) under clients that retry: nothing lost silently;
5. static safe-default checks.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness.reliability.corpus import BadInputCase, corpus
from harness.reliability.corpus_runner import CorpusRunner
from harness.reliability.defined_results import defined_result_cases, run_defined_cases
from harness.reliability.extension_corpus import extension_cases, run_extension_cases
from harness.reliability.malformed_under_load import MixedLoadResult, malformed_under_load
from harness.reliability.overload import OverloadResult, overload
from harness.reliability.report import ReliabilityReport, write_report
from harness.reliability.safe_defaults import loopback_problems, scan_unsafe_loading
from harness.reliability.server_restart import StopMode, restart_under_load
from harness.reliability.soak import soak
from harness.reliability.stub_kill import kill_stub_under_load
from harness.reliability.stub_watchdog import StubWatchdog
from harness.reliability.targets import ModelTarget, load_targets
from harness.reliability.version_swap import load_broken_model, swap_versions_under_load
from harness.reliability.wire import Protocol, WireClient
from tritonkit.build import build_repository
from tritonkit.server import LocalTriton
from tritonkit.spec import Target, load_spec

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, kw_only=True)
class SuiteOptions:
    spec: Path = PROJECT_ROOT / "models.yaml"
    work_dir: Path = PROJECT_ROOT / "build" / "reliability"
    results_dir: Path = PROJECT_ROOT / "results" / "reliability"
    soak_requests: int = 100_000
    soak_concurrency: int = 32
    quick: bool = False


def run_suite(options: SuiteOptions) -> Path:
    started = time.monotonic()
    repo = options.work_dir / "model_repository"
    build_repository(load_spec(options.spec), target=Target.LOCAL, out=repo, remember=False)
    targets = load_targets(repo)
    details: dict[str, object] = {}
    notes: list[str] = []
    log_dir = options.work_dir / "logs"
    with LocalTriton(repo, log_path=log_dir / "main.log", startup_timeout_s=300) as server:
        with WireClient(http_url=server.urls.http, grpc_url=server.urls.grpc) as client:
            runner = CorpusRunner(client, targets, collateral=2)
            try:
                log.info("bad-input corpus: %d cases x 2 protocols", len(corpus(targets)))
                result = runner.run(corpus(targets))
            finally:
                runner.close()
            defined = run_defined_cases(client, defined_result_cases(targets))
            log.info("protocol-extension corpus")
            extensions = run_extension_cases(client, extension_cases(targets), list(Protocol),
                                             http_url=server.urls.http)
        mixed = _malformed_under_load(server, targets, corpus(targets),
                                      seconds=3.0 if options.quick else 8.0)
        log.info("overload")
        over = overload(server, overload_s=4.0 if options.quick else 8.0)
        log.info("soak: %d requests at concurrency %d", options.soak_requests,
                 options.soak_concurrency)
        soaked = soak(server, total=options.soak_requests, concurrency=options.soak_concurrency,
                      warmup_s=3.0 if options.quick else 10.0)
        crashed = not server.is_running()
    explicit_repo = options.work_dir / "explicit_repository"
    shutil.rmtree(explicit_repo, ignore_errors=True)
    shutil.copytree(repo, explicit_repo)
    with LocalTriton(explicit_repo, log_path=log_dir / "explicit.log", startup_timeout_s=300,
                     model_control="explicit", load_models=["digits"]) as server:
        # The kill first: after a swap, the watchdog's reload of the killed step did not
        # recover within the window (seen twice; a later run in that order recovered in
        # 2.0 s, cause unknown); the swap reports any stub still dead.
        with StubWatchdog(server, ["digits_preprocess"]) as watchdog:  # the one Python step
            killed = kill_stub_under_load(server)
        swapped = swap_versions_under_load(server)
        broken = load_broken_model(server)
        crashed = crashed or not server.is_running()
    restarts = {mode.value: restart_under_load(repo, log_dir=log_dir / f"restart-{mode.value}",
                                               kill=mode is StopMode.SIGKILL, exit_timeout_s=5)
                for mode in StopMode}
    unsafe = scan_unsafe_loading(PROJECT_ROOT)
    loopback = loopback_problems()
    details.update({
        "corpus": result, "malformed_under_load": mixed, "defined_results": defined,
        "overload": over, "soak": soaked, "stub_kill": killed,
        "stub_watchdog_reloads": watchdog.reloads, "version_swap": swapped,
        "load_failure": broken, "server_restart": restarts, "unsafe_loading": unsafe,
        "loopback_problems": loopback,
        "distinct_bad_input_cases": result.distinct_cases,
        "seconds": round(time.monotonic() - started, 1),
    })
    summary = {
        "bad_input_cases": result.cases,
        "bad_input_clear_errors": result.clear_errors,
        "server_crashes": result.server_crashes + extensions.server_deaths + int(crashed),
        "extension_cases_sent": sum(o.sent for o in extensions.outcomes),
        "extension_internal_errors": len(extensions.internal_errors),
        "extension_known_crashes_not_sent": len(extensions.known_crashes),
        "collateral_failures": result.collateral_failures + sum(m.valid_failed for m in mixed),
        "malformed_under_load_valid_requests": sum(m.valid_sent for m in mixed),
        "malformed_under_load_valid_failed": sum(m.valid_failed for m in mixed),
        "defined_result_cases": len(defined),
        "defined_result_passed": sum(o.passed for o in defined),
        "stub_kill_recovered": int(killed.recovered and killed.wrong_answers == 0),
        "stub_kill_window_s": killed.window_s,
        "version_swap_failed_requests": swapped.failed_requests,
        "restart_lost_requests": sum(r.lost + r.wrong_answers for r in restarts.values()),
        "restart_failed_requests": sum(r.explicit_failures for r in restarts.values()),
        "overload_rejections": over.rejections,
        "overload_p99_ms_accepted": over.p99_ms_accepted,
        "soak_requests": soaked.requests,
        "soak_errors": soaked.errors,
        "soak_rss_growth_pct": max(soaked.rss_growth_pct, soaked.rss_max_process_growth_pct),
        "soak_rss_sum_growth_pct": soaked.rss_growth_pct,
        "overload_offered_factor": over.offered_factor,
        "overload_other_errors": over.other_errors,
        "overload_p99_ms_rejected": over.p99_ms_rejected,
    }
    notes.extend(_notes(result.unclear, broken.reason, over, options.quick))
    run_name = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    report = ReliabilityReport(summary=summary, details=details, corpus=result,
                               defined=defined, extensions=extensions, notes=notes)
    return write_report(report, options.results_dir, run_name)


def _malformed_under_load(server: LocalTriton, targets: tuple[ModelTarget, ...],
                          cases: list[BadInputCase], *, seconds: float) -> list[MixedLoadResult]:
    """Every model with a BYTES input (steps and ensembles), over both protocols."""
    by_name = {t.name: t for t in targets}
    chosen = [c for c in cases if c.case == "bytes_length_prefix_too_long"]
    log.info("malformed BYTES under load: %d models x 2 protocols, %.0f s each",
             len(chosen), seconds)
    return [malformed_under_load(server.urls.http, server.urls.grpc, by_name[c.model], c,
                                 protocol, seconds=seconds)
            for c in chosen for protocol in Protocol]


def _notes(unclear: tuple[object, ...], load_reason: str, over: OverloadResult,
           quick: bool) -> list[str]:
    notes = [
        f"overload ({over.cpu_split}): hey offered {over.offered_per_s:.0f} req/s = "
        f"{over.offered_factor:.2f}x the measured saturation of {over.saturation_per_s:.0f} "
        f"req/s (target {over.target_per_s:.0f}; each of the {over.workers} hey workers waits "
        f"for its answer); {over.rejections} rejected as queue full (p99 "
        f"{over.p99_ms_rejected} ms); non-200 kinds: {over.error_kinds or 'none'}",
        "stub kill: Triton 2.51's Python backend does not restart a dead stub; "
        "harness.reliability.stub_watchdog.StubWatchdog reloads the model (explicit model control)",
        f"broken model load error: {load_reason[:200]}",
        "Triton core answers malformed requests (shape, dtype, BYTES framing, batch size) "
        "itself; their statuses are in the corpus table",
    ]
    if unclear:
        notes.append(f"{len(unclear)} corpus runs without a clear error: see the table")
    if quick:
        notes.append("--quick: shorter overload and soak windows; not the acceptance run")
    return notes
