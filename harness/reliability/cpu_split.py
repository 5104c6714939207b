"""Split the machine's CPUs between a server and its load generator, as if on two hosts.

On a small machine a load generator that shares the cores with the server takes CPU from
it exactly when the server is busiest, so the rate it can offer is capped by the server's
own slowness. Pinning the server (every thread of it and of its stubs) to some CPUs and the
generator (the calling thread, and so every process or thread it starts) to the others
keeps the two apart. Linux only (`os.sched_setaffinity` on thread ids).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class CpuSplit:
    server: frozenset[int]
    generator: frozenset[int]

    def describe(self) -> str:
        return (f"server and stubs on CPU {sorted(self.server)}, "
                f"load generator on CPU {sorted(self.generator)}")


def halve_cpus(cpus: Sequence[int] | None = None) -> CpuSplit | None:
    """The upper half of the CPUs this process may use for the server, the lower half for
    the generator; None with fewer than two."""
    usable = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
    if len(usable) < 2:
        return None
    half = len(usable) // 2
    return CpuSplit(server=frozenset(usable[half:]), generator=frozenset(usable[:half]))


def _threads(pid: int) -> list[int]:
    try:
        return [int(tid) for tid in os.listdir(Path("/proc") / str(pid) / "task")]
    except OSError:
        return []


def _set(tid: int, cpus: frozenset[int] | set[int]) -> None:
    try:
        os.sched_setaffinity(tid, cpus)
    except (ProcessLookupError, PermissionError):
        pass  # the thread ended meanwhile, or is not ours: leave it


@contextmanager
def pinned_processes(pids: Sequence[int], cpus: frozenset[int]) -> Iterator[None]:
    """Every thread of `pids` runs on `cpus` inside the block (threads they start inherit
    it); afterwards every thread of them, new ones included, may use all the CPUs this
    process could use when the block began."""
    everything = os.sched_getaffinity(0)
    for pid in pids:
        for tid in _threads(pid):
            _set(tid, cpus)
    try:
        yield
    finally:
        for pid in pids:
            for tid in _threads(pid):
                _set(tid, everything)


@contextmanager
def pinned_caller(cpus: frozenset[int]) -> Iterator[None]:
    """The calling thread, and every process or thread it starts inside the block, runs on
    `cpus`; the calling thread gets its own mask back afterwards."""
    before = os.sched_getaffinity(0)  # 0: the calling thread
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
