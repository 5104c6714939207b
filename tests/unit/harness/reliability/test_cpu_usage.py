from __future__ import annotations

import os
import subprocess
import sys
import time

from harness.reliability.cpu_usage import CpuMeter, machine_cpu_s, process_cpu_s

_SPIN = "import time\nend = time.process_time() + float(__import__('sys').argv[1])\n" \
        "while time.process_time() < end: pass\n"


def test_process_cpu_s_counts_busy_time_and_zero_when_gone() -> None:
    before = process_cpu_s(os.getpid())
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    assert process_cpu_s(os.getpid()) - before >= 0.25
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_cpu_s(child.pid) == 0.0
    busy, total = machine_cpu_s()
    assert 0 < busy < total


def test_cpu_meter_splits_children_and_server() -> None:
    server = subprocess.Popen([sys.executable, "-c", _SPIN, "0.6"])  # stands for the server
    try:
        with CpuMeter(lambda: [server.pid]) as meter:
            subprocess.run([sys.executable, "-c", _SPIN, "0.4"], check=True)  # a waited child
            time.sleep(0.05)
        shares = meter.shares
        assert shares is not None
        cpu_s = shares.seconds * shares.cores
        assert shares.children * cpu_s >= 0.3  # the child's 0.4 s (and its start-up)
        assert shares.server * cpu_s >= 0.1
        assert abs(shares.children + shares.server + shares.other + shares.idle - 1) < 0.01
    finally:
        server.kill()
        server.wait()
