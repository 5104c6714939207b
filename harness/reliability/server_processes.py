"""The processes of one LocalTriton: the server and its Python-backend stubs, from /proc."""

from __future__ import annotations

from pathlib import Path

from tritonkit.server import STUB_BINARY, LocalTriton, find_orphans


def _cmdline(pid: int) -> list[str]:
    try:
        raw = (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def server_pids(server: LocalTriton) -> list[int]:
    """The server and every stub it started (live, by its instance marker)."""
    return find_orphans(instance_id=server.instance_id)


def stub_pids(server: LocalTriton, model: str | None = None) -> list[int]:
    """Python-backend stubs of `server`; with `model`, only those serving that model."""
    found = []
    for pid in server_pids(server):
        args = _cmdline(pid)
        if not args or Path(args[0]).name != STUB_BINARY:
            continue
        if model is None or any(f"/{model}/" in a or a.endswith(f"/{model}") for a in args[1:]):
            found.append(pid)
    return found
