"""Process helpers shared by the benchmark peers (`fastapi_peer`, `pytriton_peer`).

A peer runs as a child in its own session (``start_new_session=True``), so it leads its own
process group and everything it starts stays in that group. `stop_group` stops it with
SIGTERM to the group, a wait, then SIGKILL to whatever of the group is left; `group_members`
and `live_processes` read /proc to check that nothing outlived it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def live_processes(pids: tuple[int, ...]) -> list[int]:
    """Those of `pids` that still run (zombies, awaiting their parent's wait, do not count)."""
    alive = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        except OSError:
            continue
        state = stat.rpartition(")")[2].split()[0]
        if state not in ("Z", "X"):
            alive.append(pid)
    return alive


def group_members(pgid: int) -> list[int]:
    """Running processes of process group `pgid` (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text(encoding="utf-8").rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def log_tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file, or "(no log)"."""
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def probe(url: str) -> bool:
    """Whether a GET of `url` answers 200 within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def stop_group(process: subprocess.Popen[bytes], *, grace_s: float) -> None:
    """SIGTERM the group `process` leads, wait up to `grace_s` for the leader and again for
    the rest of the group, then SIGKILL the group and reap the leader."""
    pgid = process.pid  # start_new_session: the main process leads its own group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        log.warning("peer %d ignored SIGTERM for %.0f s; killing its group", pgid, grace_s)
    deadline = time.monotonic() + grace_s
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if group_members(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    process.wait(timeout=grace_s)
