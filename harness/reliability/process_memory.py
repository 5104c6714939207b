"""Resident memory (RSS) of a server and its Python-backend stubs, sampled from /proc.

Each sample keeps the RSS of every process it saw, not only their sum: a stub of 60 MiB
that leaks half of itself moves a 2.7 GiB sum by about 1 %, so flatness is judged per
process too (`MemoryTrace.process_growth`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def rss_kib(pid: int) -> int:
    """VmRSS of a live process in KiB, from /proc/<pid>/status (0 when it is gone)."""
    try:
        text = (Path("/proc") / str(pid) / "status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            fields = line.split()
            if len(fields) >= 3 and fields[2] == "kB" and fields[1].isdigit():
                return int(fields[1])
            raise ValueError(f"unexpected VmRSS line in /proc/{pid}/status: {line!r}")
    return 0  # a zombie or kernel thread has no VmRSS line


def process_label(pid: int) -> str:
    """A readable name: the executable, and for a Python-backend stub the model it serves
    (its first argument is <repository>/<model>/<version>/model.py)."""
    try:
        raw = (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return f"pid {pid}"
    args = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    if not args:
        return f"pid {pid}"
    name = Path(args[0]).name
    if len(args) > 1 and args[1].endswith("model.py"):
        return f"{name}:{Path(args[1]).parent.parent.name}"
    return name


@dataclass(frozen=True, kw_only=True)
class ProcessRss:
    pid: int
    label: str  # process_label(pid)
    kib: int


@dataclass(frozen=True, kw_only=True)
class MemorySample:
    at_s: float  # seconds since sampling started
    rss: tuple[ProcessRss, ...]

    @property
    def total_kib(self) -> int:
        return sum(p.kib for p in self.rss)

    @property
    def processes(self) -> int:
        return len(self.rss)

    def of(self, pid: int) -> ProcessRss | None:
        return next((p for p in self.rss if p.pid == pid), None)


@dataclass(frozen=True, kw_only=True)
class ProcessGrowth:
    pid: int
    label: str
    start_kib: float  # mean over the first window after warmup
    end_kib: float  # mean over the last window
    growth_pct: float


def _windows(values: Sequence[float], window_fraction: float) -> tuple[float, float]:
    width = max(2, int(len(values) * window_fraction))
    return float(np.mean(values[:width])), float(np.mean(values[-width:]))


def _growth(first: float, last: float) -> float:
    return (last - first) / first * 100.0 if first > 0 else 0.0


@dataclass(frozen=True, kw_only=True)
class MemoryTrace:
    samples: tuple[MemorySample, ...]

    def steady(self, warmup_s: float) -> tuple[MemorySample, ...]:
        steady = tuple(s for s in self.samples if s.at_s >= warmup_s)
        if len(steady) < 4:
            raise ValueError(f"only {len(steady)} memory samples after {warmup_s:g} s of warmup "
                             f"({len(self.samples)} in all)")
        return steady

    def growth_pct(self, *, warmup_s: float, window_fraction: float = 0.15) -> float:
        """Growth of the mean summed RSS over the last window against the first window after
        warmup. Both windows span `window_fraction` of the samples taken after `warmup_s`."""
        first, last = _windows([s.total_kib for s in self.steady(warmup_s)], window_fraction)
        return _growth(first, last)

    def process_growth(self, *, warmup_s: float,
                       window_fraction: float = 0.15) -> tuple[ProcessGrowth, ...]:
        """The same growth for each process alive through every sample after warmup, largest
        growth first. A process that appeared or vanished meanwhile (a restarted stub) is left
        out: `pids_changed` says whether that happened."""
        steady = self.steady(warmup_s)
        common = set.intersection(*({p.pid for p in s.rss} for s in steady))
        grown = []
        for pid in common:
            seen = [s.of(pid) for s in steady]
            values = [float(p.kib) for p in seen if p is not None]
            first, last = _windows(values, window_fraction)
            grown.append(ProcessGrowth(pid=pid, label=seen[0].label if seen[0] else str(pid),
                                       start_kib=round(first, 1), end_kib=round(last, 1),
                                       growth_pct=round(_growth(first, last), 3)))
        return tuple(sorted(grown, key=lambda g: (-g.growth_pct, g.pid)))

    def pids_changed(self, *, warmup_s: float) -> bool:
        pid_sets = {frozenset(p.pid for p in s.rss) for s in self.steady(warmup_s)}
        return len(pid_sets) > 1

    @property
    def peak_kib(self) -> int:
        return max((s.total_kib for s in self.samples), default=0)


class MemorySampler:
    """Samples the RSS of each of `pids()` every `interval_s` in a background thread.

    A context manager: sampling starts on entry (one sample at once) and ends on exit (one
    last sample then), so even a short run has a first and a last sample.
    """

    def __init__(self, pids: Callable[[], Sequence[int]], *, interval_s: float = 1.0) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._pids = pids
        self._interval_s = interval_s
        self._samples: list[MemorySample] = []
        self._labels: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._started = 0.0

    def __enter__(self) -> MemorySampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        pids = list(self._pids())
        for pid in pids:
            if pid not in self._labels:
                self._labels[pid] = process_label(pid)
        rss = tuple(ProcessRss(pid=pid, label=self._labels[pid], kib=rss_kib(pid))
                    for pid in pids)
        sample = MemorySample(at_s=time.monotonic() - self._started,
                              rss=tuple(p for p in rss if p.kib > 0))
        with self._lock:
            self._samples.append(sample)

    def _loop(self) -> None:
        next_at = time.monotonic()
        while True:
            self._sample()
            next_at += self._interval_s
            if self._stop.wait(max(0.0, next_at - time.monotonic())):
                return

    def trace(self) -> MemoryTrace:
        with self._lock:
            return MemoryTrace(samples=tuple(self._samples))
