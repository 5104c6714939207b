"""Resident memory (RSS) of a server and its Python-backend stubs, sampled from /proc."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_PAGE_KIB = 4  # /proc/<pid>/status reports VmRSS in kB; statm is in pages


def rss_kib(pid: int) -> int:
    """VmRSS of a live process in KiB (0 when it is gone)."""
    try:
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return 0


@dataclass(frozen=True, kw_only=True)
class MemorySample:
    at_s: float  # seconds since sampling started
    total_kib: int
    processes: int


@dataclass(frozen=True, kw_only=True)
class MemoryTrace:
    samples: tuple[MemorySample, ...]

    def growth_pct(self, *, warmup_s: float, window_fraction: float = 0.15) -> float:
        """Growth of the mean RSS over the last window against the first window after warmup.

        Both windows span `window_fraction` of the samples taken after `warmup_s`.
        """
        steady = [s.total_kib for s in self.samples if s.at_s >= warmup_s]
        if len(steady) < 4:
            raise ValueError(f"only {len(steady)} memory samples after warmup")
        width = max(2, int(len(steady) * window_fraction))
        first = float(np.mean(steady[:width]))
        last = float(np.mean(steady[-width:]))
        return (last - first) / first * 100.0

    @property
    def peak_kib(self) -> int:
        return max((s.total_kib for s in self.samples), default=0)


class MemorySampler:
    """Samples the summed RSS of `pids()` every `interval_s` in a background thread."""

    def __init__(self, pids: Callable[[], list[int]], *, interval_s: float = 1.0) -> None:
        self._pids = pids
        self._interval_s = interval_s
        self._samples: list[MemorySample] = []
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

    def _loop(self) -> None:
        while True:
            pids = self._pids()
            self._samples.append(MemorySample(at_s=time.monotonic() - self._started,
                                              total_kib=sum(rss_kib(p) for p in pids),
                                              processes=len(pids)))
            if self._stop.wait(self._interval_s):
                return

    def trace(self) -> MemoryTrace:
        return MemoryTrace(samples=tuple(self._samples))
