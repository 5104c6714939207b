"""Start a child in its own process group, stop the whole group, and find processes in /proc.

- `spawn_group_leader` starts the child in a new session and process group
  (`start_new_session=True`), so the processes it starts in turn can be stopped with it. On
  Linux the child gets `prctl(PR_SET_PDEATHSIG, SIGTERM)`: if the calling process dies (crash,
  SIGKILL), the kernel sends the child SIGTERM. The signal fires when the *thread* that started
  the child exits, so start it from a thread that outlives it (the main thread, normally).
- `stop_group` sends SIGTERM to the leader, waits, sends SIGKILL if needed, then kills whatever
  is left in its group.
- `find_processes` lists live processes by executable, environment entry and command line;
  `describe_exit` says how a child ended.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from tritonkit.errors import ServerError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_GROUP_KILL_WAIT_S = 5.0
_GROUP_KILL_POLL_S = 0.05


def _read_proc(pid: int, name: str) -> bytes | None:
    try:
        return (Path("/proc") / str(pid) / name).read_bytes()
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a process, from /proc/<pid>/stat."""
    raw = _read_proc(pid, "stat")
    if raw is None:
        return None
    fields = raw.decode(errors="replace").rsplit(")", 1)[-1].split()
    try:
        return fields[0], int(fields[2])
    except (IndexError, ValueError):
        return None


def _environ_entries(pid: int) -> list[bytes]:
    """The b"NAME=value" entries of a process's environment; none when it is unreadable."""
    return (_read_proc(pid, "environ") or b"").split(b"\0")


def _pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    members = []
    for pid in _pids():
        stat = _proc_stat(pid)
        if stat is not None and stat[1] == pgid and stat[0] != "Z":
            members.append(pid)
    return members


def find_processes(
    *,
    executables: Collection[Path],
    environ_entry: bytes | None = None,
    cmdline_part: bytes | None = None,
) -> list[int]:
    """Sorted PIDs of live processes running one of `executables` (resolved paths).

    `environ_entry` (b"NAME=value") keeps those whose environment has exactly that entry;
    `cmdline_part` keeps those whose command line contains it.
    """
    found = []
    for pid in _pids():
        try:
            exe = Path(os.readlink(f"/proc/{pid}/exe"))
        except OSError:
            continue
        if exe not in executables:
            continue
        stat = _proc_stat(pid)
        if stat is None or stat[0] == "Z":
            continue
        if environ_entry is not None and environ_entry not in _environ_entries(pid):
            continue
        if cmdline_part is not None and cmdline_part not in (_read_proc(pid, "cmdline") or b""):
            continue
        found.append(pid)
    return sorted(found)


def _die_with_caller() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when the calling thread dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the caller died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def spawn_group_leader(
    command: Sequence[str], *, env: Mapping[str, str], cwd: Path, output: IO[bytes]
) -> subprocess.Popen[bytes]:
    """Start `command` leading a new process group, stdout and stderr into `output`.

    The child dies with the calling thread (see the module docstring). Raises ServerError
    when the command cannot be run.
    """
    try:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_caller(),  # noqa: PLW1509 (only prctl, no locks)
        )
    except OSError as e:
        raise ServerError(f"cannot run {command[0]}: {e}") from e


def describe_exit(proc: subprocess.Popen[bytes] | None) -> str:
    """How a process ended ("exited with code 1", "was killed by SIGKILL")."""
    code = proc.poll() if proc is not None else None
    if code is None:
        return "is running" if proc is not None else "was not started"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def stop_group(proc: subprocess.Popen[bytes], *, timeout_s: float, name: str) -> None:
    """SIGTERM `proc`, wait `timeout_s`, SIGKILL it if needed, then kill the rest of its group.

    `proc` must lead its own process group (`spawn_group_leader`). `name` names it in messages.
    Raises ServerError when members of the group survive SIGKILL.
    """
    pgid = proc.pid  # start_new_session: the child leads its own process group
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning(
                "%s (pid %d) did not stop within %.0f s; killing it", name, proc.pid, timeout_s
            )
            proc.kill()
            proc.wait()
    _, survivors = kill_until_gone(lambda: group_members(pgid))
    if survivors:
        raise ServerError(f"processes {survivors} of {name}'s group {pgid} survived SIGKILL")


def kill_until_gone(find: Callable[[], list[int]], *, timeout_s: float = _GROUP_KILL_WAIT_S
                    ) -> tuple[list[int], list[int]]:
    """SIGKILL what `find()` returns until it returns nothing or `timeout_s` passes.

    Returns (every pid killed, the pids still alive at the deadline: empty on success).
    """
    deadline = time.monotonic() + timeout_s
    killed: list[int] = []
    while pids := find():
        if time.monotonic() > deadline:
            return killed, pids
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            if pid not in killed:
                killed.append(pid)
        time.sleep(_GROUP_KILL_POLL_S)
    return killed, []
