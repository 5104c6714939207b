"""The tuning report: every trial's throughput-p99 curve per model, the front, the choice.

`write_tuning_report(result, out)` writes `report.md`, `trials.csv` and one plot per tuned
model (`plots/<model>.png`, when matplotlib is installed: the `tune` extra).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from pathlib import Path

from tritonkit.tuning.perf_analyzer import SweepPoint
from tritonkit.tuning.search import Trial, format_value
from tritonkit.tuning.session import TuningResult

log = logging.getLogger(__name__)


def pareto_front(points: Sequence[SweepPoint]) -> list[SweepPoint]:
    """The points no other point beats on both throughput (higher) and p99 (lower)."""
    front: list[SweepPoint] = []
    for p in sorted(points, key=lambda q: (q.p99_ms, -q.throughput)):
        if not front or p.throughput > front[-1].throughput:
            front.append(p)
    return front


def _trials_of(result: TuningResult, model: str) -> list[Trial]:
    return [t for t in result.search.trials if t.model in ("", model)]


def _plot(result: TuningResult, model: str, path: Path) -> bool:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        log.warning("matplotlib is not installed (the tune extra): no plots")
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    chosen = result.search.chosen
    for trial in _trials_of(result, model):
        xs = [p.p99_ms for p in trial.points]
        ys = [p.throughput for p in trial.points]
        style = "-" if trial.number in (0, chosen.number) else ":"
        ax.plot(xs, ys, style, marker="o", markersize=3, label=f"{trial.number}: "
                f"{trial.describe()}")
    every = [p for t in result.search.trials for p in t.points]
    front = pareto_front(every)
    ax.step([p.p99_ms for p in front], [p.throughput for p in front], where="post",
            color="black", linewidth=1, alpha=0.5, label="front (all trials)")
    ax.plot([chosen.score.p99_ms], [chosen.score.throughput], marker="*", markersize=16,
            color="red", linestyle="none", label="chosen point")
    ax.axvline(result.budget_p99_ms, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("p99 latency (ms)")
    ax.set_ylabel("inferences/s")
    ax.set_title(f"{result.pipeline}: trials that set {model}")
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _write_trials_csv(result: TuningResult, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", "change", "kept", "concurrency", "infer_per_s", "p50_ms",
                         "p99_ms"])
        for t in result.search.trials:
            for p in t.points:
                # Model Analyzer reports no p50 (NaN): an empty cell, not `nan`
                p50 = "" if math.isnan(p.p50_ms) else round(p.p50_ms, 3)
                writer.writerow([t.number, t.describe(), t.kept, p.concurrency,
                                 round(p.throughput, 1), p50, round(p.p99_ms, 3)])


def _confirmation_lines(confirmation: Sequence[Trial]) -> list[str]:
    if len(confirmation) != 2:
        return []
    start, chosen = (t.score for t in confirmation)
    return [f"- measured again, back to back: start {start.throughput:.0f} infer/s "
            f"(p99 {start.p99_ms:.2f} ms), choice {chosen.throughput:.0f} infer/s "
            f"(p99 {chosen.p99_ms:.2f} ms): {chosen.throughput / start.throughput:.2f}x"]


def report_markdown(result: TuningResult, plots: Sequence[str]) -> str:
    search = result.search
    start, chosen = search.start.score, search.chosen.score
    lines = [f"# Tuning `{result.pipeline}`: p99 budget {result.budget_p99_ms:g} ms", ""]
    lines += [
        f"- start (the spec's settings): {start.throughput:.0f} infer/s at concurrency "
        f"{start.concurrency}, p99 {start.p99_ms:.2f} ms"
        + ("" if start.in_budget else " (no level within budget)"),
        f"- chosen (trial {search.chosen.number}): {chosen.throughput:.0f} infer/s at "
        f"concurrency {chosen.concurrency}, p99 {chosen.p99_ms:.2f} ms"
        + ("" if chosen.in_budget else " (no level within budget)"),
        f"- {len(search.trials)} trials; a change was kept only when it beat the incumbent "
        "by the minimum gain (the score: best throughput among levels within budget).",
        *_confirmation_lines(search.confirmation),
        "",
        "## Settings that changed", "",
    ]
    changes = search.changes()
    if changes:
        lines += ["| model | setting | spec | chosen |", "|---|---|---|---|"]
        lines += [f"| {m} | {k.value} | {format_value(a)} | {format_value(b)} |"
                  for m, k, a, b in changes]
    else:
        lines.append("None: no candidate beat the spec's settings by the minimum gain.")
    fixed = [(s.model, k, why) for s in result.spaces for k, why in s.fixed.items()]
    if fixed:
        lines += ["", "Not searched:", ""]
        lines += [f"- {m}.{k.value}: {why}" for m, k, why in fixed]
    lines += ["", "## Trials", "",
              "| trial | change | kept | score infer/s | at c | p99 ms | in budget |",
              "|---|---|---|---|---|---|---|"]
    again = {t.number: label for t, label in zip(search.confirmation, ("the start", "the choice"),
                                                   strict=False)}
    for t in search.trials:
        change = (f"{again[t.number]}, measured again" if t.number in again else t.describe())
        lines.append(f"| {t.number} | {change} | {'yes' if t.kept else ''} | "
                     f"{t.score.throughput:.0f} | {t.score.concurrency} | "
                     f"{t.score.p99_ms:.2f} | {'yes' if t.score.in_budget else 'no'} |")
    lines += ["", "## Throughput-p99 front per model", ""]
    lines += [f"![{Path(p).stem}]({p})" for p in plots] or ["(no plots: matplotlib missing)"]
    lines += ["", "Raw points: [trials.csv](trials.csv).", ""]
    return "\n".join(lines)


def write_tuning_report(result: TuningResult, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    for space in result.spaces:
        relative = f"plots/{space.model}.png"
        if _plot(result, space.model, out / relative):
            plots.append(relative)
    _write_trials_csv(result, out / "trials.csv")
    path = out / "report.md"
    path.write_text(report_markdown(result, plots), encoding="utf-8")
    return path
