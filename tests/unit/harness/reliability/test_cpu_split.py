from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.reliability.cpu_split import CpuSplit, halve_cpus, pinned_caller, pinned_processes

_THREADS = """
import threading, time
for _ in range(3):
    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
print("up", flush=True)
time.sleep(30)
"""


def _masks(pid: int) -> set[frozenset[int]]:
    return {frozenset(os.sched_getaffinity(int(tid))) for tid in os.listdir(f"/proc/{pid}/task")}


def test_halve_cpus() -> None:
    assert halve_cpus([0, 1, 2, 3]) == CpuSplit(server=frozenset({2, 3}),
                                                generator=frozenset({0, 1}))
    assert halve_cpus([0, 1, 2]) == CpuSplit(server=frozenset({1, 2}), generator=frozenset({0}))
    assert halve_cpus([5]) is None
    assert "CPU [1]" in CpuSplit(server=frozenset({1}), generator=frozenset({0})).describe()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_pinning_moves_every_thread_and_restores_them() -> None:
    split = halve_cpus()
    assert split is not None
    everything = frozenset(os.sched_getaffinity(0))
    server = subprocess.Popen([sys.executable, "-c", _THREADS], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "up"
        assert len(os.listdir(f"/proc/{server.pid}/task")) >= 4
        with pinned_processes([server.pid], split.server), pinned_caller(split.generator):
            assert _masks(server.pid) == {split.server}
            assert frozenset(os.sched_getaffinity(0)) == split.generator
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
            try:
                assert frozenset(os.sched_getaffinity(child.pid)) == split.generator
            finally:
                child.kill()
                child.wait()
        assert _masks(server.pid) == {everything}
        assert frozenset(os.sched_getaffinity(0)) == everything
    finally:
        server.kill()
        server.wait()
