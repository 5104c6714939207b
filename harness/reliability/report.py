"""Write results/reliability/<run>/summary.json and report.md, and point latest/ at them."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.reliability.corpus_runner import CorpusResult
from harness.reliability.defined_results import DefinedOutcome
from harness.reliability.extension_corpus import ExtensionResult

SUMMARY_KEYS = (
    "bad_input_cases", "bad_input_clear_errors", "server_crashes", "collateral_failures",
    "stub_kill_recovered", "stub_kill_window_s", "version_swap_failed_requests",
    "overload_rejections", "overload_p99_ms_accepted", "soak_requests", "soak_errors",
    "soak_rss_growth_pct",
)


@dataclass(frozen=True, kw_only=True)
class ReliabilityReport:
    summary: Mapping[str, float | int]
    details: Mapping[str, Any]
    corpus: CorpusResult
    notes: Sequence[str]
    defined: Sequence[DefinedOutcome] = ()
    extensions: ExtensionResult | None = None


def _json(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return _json(asdict(value))
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, int | float | str):
        return value.value
    return value


def _corpus_table(corpus: CorpusResult) -> list[str]:
    lines = ["| case | model | protocol | origin | status | clear | message |",
             "|---|---|---|---|---|---|---|"]
    for o in corpus.outcomes:
        message = o.message.replace("|", "\\|").replace("\n", " ")[:140]
        lines.append(f"| {o.case} | {o.model} | {o.protocol.value} | {o.origin.value} | "
                     f"{o.status} | {'yes' if o.clear else 'NO: ' + o.problem} | {message} |")
    return lines


def _defined_table(outcomes: Sequence[DefinedOutcome]) -> list[str]:
    lines = ["| case | model | protocol | passed | what |", "|---|---|---|---|---|"]
    lines += [f"| {o.case} | {o.model} | {o.protocol.value} | "
              f"{'yes' if o.passed else 'NO: ' + o.problem} | {o.description} |"
              for o in outcomes]
    return lines


def _extension_tables(result: ExtensionResult) -> list[str]:
    """The answers of the extension corpus, grouped: what was sent and how it was answered;
    the HTTP 500 / INTERNAL answers listed; the known crashes that were not sent."""
    groups = Counter((o.case, o.protocol.value, o.status) for o in result.outcomes)
    lines = [f"## Protocol-extension corpus ({len(result.outcomes)} runs, server deaths "
             f"{result.server_deaths})", "", "| case | protocol | answer | runs |",
             "|---|---|---|---|"]
    lines += [f"| {case} | {protocol} | {status} | {n} |"
              for (case, protocol, status), n in sorted(groups.items())]
    errors = Counter((o.case, o.protocol.value, o.message[:160]) for o in result.internal_errors)
    lines += ["", f"### Answered 500 / INTERNAL ({len(result.internal_errors)} runs): a "
              "malformed parameter Triton's core does not refuse as the client's error", "",
              "| case | protocol | message | runs |", "|---|---|---|---|"]
    lines += [f"| {case} | {protocol} | {message.replace('|', '/')} | {n} |"
              for (case, protocol, message), n in sorted(errors.items())]
    lines += ["", f"### Known crashes, not sent ({len(result.known_crashes)} runs)", ""]
    lines += sorted({f"- {o.model} output {o.output}: {o.case} ({o.note})"
                     for o in result.known_crashes})
    return lines


def write_report(report: ReliabilityReport, results_dir: Path, run_name: str) -> Path:
    run_dir = results_dir / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    missing = [k for k in SUMMARY_KEYS if k not in report.summary]
    if missing:
        raise ValueError(f"summary lacks {missing}")
    (run_dir / "summary.json").write_text(json.dumps(dict(report.summary), indent=2) + "\n")
    (run_dir / "details.json").write_text(json.dumps(_json(dict(report.details)), indent=2)
                                          + "\n")
    lines = ["# Reliability report", "", "## Summary", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report.summary.items()]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    lines += ["", "## Scenario details", "", "```json",
              json.dumps(_json({k: v for k, v in report.details.items()
                                if k not in ("corpus", "defined_results")}), indent=2),
              "```", "",
              f"## Defined-result edge cases ({len(report.defined)} runs): valid input, "
              "must succeed", ""]
    lines += _defined_table(report.defined)
    if report.extensions is not None:
        lines += ["", *_extension_tables(report.extensions)]
    lines += ["",
              f"## Bad-input corpus ({report.corpus.cases} runs, "
              f"{report.corpus.distinct_cases} distinct cases)", ""]
    lines += _corpus_table(report.corpus)
    (run_dir / "report.md").write_text("\n".join(lines) + "\n")
    latest = results_dir / "latest"
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.is_dir():
        shutil.rmtree(latest)
    shutil.copytree(run_dir, latest)
    return run_dir
