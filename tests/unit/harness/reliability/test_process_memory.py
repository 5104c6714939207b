from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.reliability.process_memory import (
    MemorySample,
    MemorySampler,
    MemoryTrace,
    ProcessRss,
    process_label,
    rss_kib,
)

# A child that allocates (and touches) N MiB whenever it reads "N" on stdin, answering "ok".
_ALLOCATOR = """
import sys
held = []
for line in sys.stdin:
    held.append(bytearray(int(line) * 1024 * 1024))  # calloc: pages not resident yet
    held[-1][::4096] = b"x" * len(range(0, len(held[-1]), 4096))  # touch every page
    print("ok", flush=True)
"""


class Allocator:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _ALLOCATOR], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def allocate(self, mib: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{mib}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"


@pytest.fixture
def allocator() -> Iterator[Allocator]:
    child = Allocator()
    child.allocate(1)  # the interpreter is up
    try:
        yield child
    finally:
        child.proc.kill()
        child.proc.wait()


def _statm_rss_kib(pid: int) -> int:
    resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


def test_rss_kib_reads_vmrss_of_a_live_process_and_zero_for_a_gone_one() -> None:
    mine = rss_kib(os.getpid())
    assert mine > 10_000  # a Python interpreter with numpy loaded: tens of MiB
    assert abs(mine - _statm_rss_kib(os.getpid())) < 0.1 * mine
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert rss_kib(child.pid) == 0


def test_rss_kib_sees_memory_a_child_allocates(allocator: Allocator) -> None:
    before = rss_kib(allocator.proc.pid)
    allocator.allocate(64)
    after = rss_kib(allocator.proc.pid)
    assert after - before >= 60 * 1024


def test_sampler_records_growth_of_a_child_between_samples(allocator: Allocator) -> None:
    pid = allocator.proc.pid
    with MemorySampler(lambda: [pid, os.getpid()], interval_s=0.05) as sampler:
        time.sleep(0.5)
        allocator.allocate(32)
        time.sleep(0.3)
        allocator.allocate(32)
        time.sleep(0.5)
    trace = sampler.trace()
    assert len(trace.samples) >= 20
    assert all(s.processes == 2 for s in trace.samples)
    child = [s.of(pid) for s in trace.samples]
    first, last = child[0], child[-1]
    assert first is not None and last is not None
    assert last.kib - first.kib >= 60 * 1024
    assert first.label == "python3" or first.label.startswith("python")
    # samples are new readings, not one reading repeated
    assert len({c.kib for c in child if c is not None}) >= 3
    grown = {g.pid: g for g in trace.process_growth(warmup_s=0.0)}
    assert grown[pid].growth_pct > 100.0  # ~10 MiB interpreter + 64 MiB
    assert trace.process_growth(warmup_s=0.0)[0].pid == pid  # largest growth first
    assert abs(grown[os.getpid()].growth_pct) < 5.0
    assert trace.growth_pct(warmup_s=0.0) > 0.0
    assert not trace.pids_changed(warmup_s=0.0)


def test_flat_process_shows_no_growth(allocator: Allocator) -> None:
    pid = allocator.proc.pid
    with MemorySampler(lambda: [pid], interval_s=0.05) as sampler:
        time.sleep(0.5)
    trace = sampler.trace()
    assert abs(trace.growth_pct(warmup_s=0.0)) < 1.0
    assert abs(trace.process_growth(warmup_s=0.0)[0].growth_pct) < 1.0


def test_growth_windows_and_vanished_process() -> None:
    def sample(at_s: float, *kib: int) -> MemorySample:
        return MemorySample(at_s=at_s, rss=tuple(ProcessRss(pid=i + 1, label=f"p{i + 1}", kib=k)
                                                 for i, k in enumerate(kib)))

    # p1 grows 100 -> 110 after warmup; p2 (small) doubles; p3 vanishes halfway
    samples = [sample(0.0, 500, 10, 7)]  # warmup, ignored
    samples += [sample(1.0 + i, 100, 10, 7) for i in range(10)]
    samples += [sample(11.0 + i, 110, 20) for i in range(10)]
    trace = MemoryTrace(samples=tuple(samples))
    growth = trace.process_growth(warmup_s=1.0, window_fraction=0.2)
    assert [(g.label, g.growth_pct) for g in growth] == [("p2", 100.0), ("p1", 10.0)]
    assert trace.growth_pct(warmup_s=1.0, window_fraction=0.2) == pytest.approx(
        (130 - 117) / 117 * 100)
    assert trace.pids_changed(warmup_s=1.0)
    with pytest.raises(ValueError, match="only 0 memory samples"):
        trace.growth_pct(warmup_s=100.0)


def test_process_label_names_a_stub_by_its_model(tmp_path: Path) -> None:
    script = tmp_path / "repo" / "digits_preprocess" / "1" / "model.py"
    script.parent.mkdir(parents=True)
    script.write_text("import time\ntime.sleep(30)\n")
    child = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 5
        while b"model.py" not in Path(f"/proc/{child.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert process_label(child.pid) == f"{Path(sys.executable).name}:digits_preprocess"
    finally:
        child.kill()
        child.wait()
    assert process_label(child.pid) == f"pid {child.pid}"
