"""Where the CPU went during a measurement: the load generator, the server, everything else.

On a small machine the load generator and the server share the cores, so an overload figure
means little without this split. Read from /proc/stat (the whole machine), /proc/<pid>/stat
(the server and its stubs) and getrusage(RUSAGE_CHILDREN) (child processes this process has
waited for, e.g. hey).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when it is gone)."""
    try:
        text = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime (fields 14, 15)


def machine_cpu_s() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, summed over the cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user
    return (total - idle) * _TICK_S, total * _TICK_S


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True, kw_only=True)
class CpuShares:
    """Shares of all cores' time over `seconds` (each in [0, 1]; they add up to 1)."""

    seconds: float
    cores: int
    children: float  # processes this process started and waited for (hey)
    server: float  # the server and its stubs
    other: float  # every other busy CPU: this process, other programs on the machine
    idle: float


class CpuMeter:
    """Measures `CpuShares` between entry and exit. The server's processes are listed on
    entry and read again on exit (a process gone by then counts as 0 for its whole run, so
    keep the server up)."""

    def __init__(self, server_pids: Callable[[], Sequence[int]]) -> None:
        self._server_pids = server_pids
        self._pids: list[int] = []
        self._start: tuple[float, float, float, float, float] = (0.0,) * 5
        self.shares: CpuShares | None = None

    def _read(self) -> tuple[float, float, float, float, float]:
        busy, total = machine_cpu_s()
        server = sum(process_cpu_s(p) for p in self._pids)
        return time.monotonic(), busy, total, children_cpu_s(), server

    def __enter__(self) -> CpuMeter:
        self._pids = list(self._server_pids())
        self._start = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._read()
        wall, busy, total, children, server = (e - s for e, s in zip(end, self._start,
                                                                      strict=True))
        if total <= 0:
            return
        self.shares = CpuShares(
            seconds=round(wall, 2), cores=os.cpu_count() or 1,
            children=round(children / total, 3), server=round(server / total, 3),
            other=round(max(0.0, busy - children - server) / total, 3),
            idle=round((total - busy) / total, 3))
