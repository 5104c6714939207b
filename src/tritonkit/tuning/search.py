"""The search of `tritonkit tune`: one setting at a time, kept when the measurement says so.

Each model of a pipeline has a few serving knobs (`Knob`); a `Settings` maps every tuned model
to its values. Starting from the spec's own values, the search tries each other value of one
knob at a time (coordinate descent, as Model Analyzer's quick search does) and keeps a change
when the pipeline's score beats the incumbent's by `min_gain`. The score is the best
throughput among the concurrency levels whose p99 meets the budget; a run with no level in
budget scores below every run with one, ordered by its lowest p99.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from tritonkit.tuning.perf_analyzer import SweepPoint

log = logging.getLogger(__name__)


class Knob(str, Enum):
    INSTANCE_COUNT = "instance_count"
    INTRA_OP_THREADS = "intra_op_threads"
    MAX_QUEUE_DELAY_US = "max_queue_delay_us"
    PREFERRED_BATCH_SIZES = "preferred_batch_sizes"


KnobValue = int | tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class ModelSpace:
    """The values the search may give each knob of one model; `start` is the spec's value.

    `fixed` names knobs the search leaves alone, with the reason (for the report).
    """

    model: str
    start: Mapping[Knob, KnobValue]
    choices: Mapping[Knob, tuple[KnobValue, ...]]
    fixed: Mapping[Knob, str] = field(default_factory=dict)


Settings = Mapping[str, Mapping[Knob, KnobValue]]


@dataclass(frozen=True, kw_only=True)
class Score:
    in_budget: bool
    throughput: float  # best inferences/s among the levels in budget (or overall, if none)
    p99_ms: float  # p99 of that level (the lowest p99 measured, if none is in budget)
    concurrency: int

    def beats(self, other: Score, min_gain: float) -> bool:
        if self.in_budget != other.in_budget:
            return self.in_budget
        if not self.in_budget:
            return self.p99_ms < other.p99_ms * (1 - min_gain)
        return self.throughput > other.throughput * (1 + min_gain)


def score(points: Sequence[SweepPoint], budget_p99_ms: float) -> Score:
    if not points:  # no level stabilized: the candidate loses to every measured one
        return Score(in_budget=False, throughput=0.0, p99_ms=float("inf"), concurrency=0)
    within = [p for p in points if p.p99_ms <= budget_p99_ms]
    if within:
        best = max(within, key=lambda p: p.throughput)
        return Score(in_budget=True, throughput=best.throughput, p99_ms=best.p99_ms,
                     concurrency=best.concurrency)
    best = min(points, key=lambda p: p.p99_ms)
    return Score(in_budget=False, throughput=best.throughput, p99_ms=best.p99_ms,
                 concurrency=best.concurrency)


@dataclass(frozen=True, kw_only=True)
class Trial:
    """One measured candidate: what changed from the incumbent, its sweep and score."""

    number: int
    settings: Settings
    model: str  # the model whose knob changed ("" for the starting point)
    knob: Knob | None
    value: KnobValue | None
    points: tuple[SweepPoint, ...]
    score: Score
    kept: bool = False

    def describe(self) -> str:
        if self.knob is None:
            return "start (the spec's settings)"
        return f"{self.model}.{self.knob.value} = {format_value(self.value)}"


def format_value(value: KnobValue | None) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]" if value else "[] (none)"
    return str(value)


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    trials: tuple[Trial, ...]
    chosen: Trial
    confirmation: tuple[Trial, ...] = ()  # (start, chosen) measured again, back to back

    @property
    def start(self) -> Trial:
        return self.trials[0]

    def changes(self) -> list[tuple[str, Knob, KnobValue, KnobValue]]:
        """(model, knob, start value, chosen value) for every knob the search moved."""
        moved = []
        for model, knobs in self.chosen.settings.items():
            for knob, value in knobs.items():
                before = self.start.settings[model][knob]
                if before != value:
                    moved.append((model, knob, before, value))
        return moved


Measure = Callable[[Settings], Sequence[SweepPoint]]


def _with(settings: Settings, model: str, knob: Knob, value: KnobValue) -> Settings:
    return {m: ({**k, knob: value} if m == model else dict(k)) for m, k in settings.items()}


def coordinate_search(spaces: Sequence[ModelSpace], measure: Measure, *,
                      budget_p99_ms: float, min_gain: float = 0.05, confirm: bool = True,
                      on_trial: Callable[[Trial], None] | None = None) -> SearchResult:
    """Try each other value of each knob, one at a time; keep what beats the incumbent.

    With `confirm`, a choice other than the start is measured again next to the start.
    """
    incumbent_settings: Settings = {s.model: dict(s.start) for s in spaces}
    trials: list[Trial] = []

    def run(settings: Settings, model: str, knob: Knob | None,
            value: KnobValue | None) -> Trial:
        points = tuple(measure(settings))
        trial = Trial(number=len(trials), settings=settings, model=model, knob=knob,
                      value=value, points=points, score=score(points, budget_p99_ms))
        trials.append(trial)
        log.info("trial %d: %s -> %.0f infer/s at c=%d, p99 %.1f ms%s", trial.number,
                 trial.describe(), trial.score.throughput, trial.score.concurrency,
                 trial.score.p99_ms, "" if trial.score.in_budget else " (over budget)")
        if on_trial is not None:
            on_trial(trial)
        return trial

    incumbent = run(incumbent_settings, "", None, None)
    kept = {incumbent.number}
    for space in spaces:
        for knob, values in space.choices.items():
            best = incumbent
            for value in values:
                if value == incumbent.settings[space.model][knob]:
                    continue
                trial = run(_with(incumbent.settings, space.model, knob, value), space.model,
                            knob, value)
                if trial.score.beats(best.score, min_gain):
                    best = trial
            if best is not incumbent:
                kept.add(best.number)
            incumbent = best
    confirmation: tuple[Trial, ...] = ()
    if confirm and incumbent.number != 0:
        # On a shared machine one lucky window can win a round: measure the start and the
        # choice again, back to back, and keep the choice only if it still wins.
        again_start = run(trials[0].settings, "", None, None)
        again_chosen = run(incumbent.settings, incumbent.model, incumbent.knob, incumbent.value)
        confirmation = (again_start, again_chosen)
        if not again_chosen.score.beats(again_start.score, 0.0):
            log.warning("the choice did not beat the start when measured again: keeping the "
                        "spec's settings")
            kept = {0}
            incumbent = trials[0]
    marked = tuple(replace(t, kept=t.number in kept) for t in trials)
    return SearchResult(trials=marked, chosen=marked[incumbent.number],
                        confirmation=tuple(marked[t.number] for t in confirmation))
