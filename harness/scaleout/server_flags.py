"""The serving container's tritonserver flags, kept in docker/triton-server.flags.

The container's entrypoint (docker/entrypoint.sh) reads that file; the scale-out harness
starts its local replicas with the same flags, so each of them is exercised on a real server.
"""

from __future__ import annotations

import functools
import logging
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from harness.scaleout.errors import ScaleoutError
from tritonkit.errors import ServerError
from tritonkit.server import find_tritonserver, server_environment

log = logging.getLogger(__name__)

FLAGS_FILE = Path(__file__).resolve().parents[2] / "docker" / "triton-server.flags"
ADMIN_KEY_PLACEHOLDER = "@ADMIN_KEY@"
#: The header that unlocks the restricted APIs (its value is the admin key).
ADMIN_HEADER = "triton-admin-key"
_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_FLAG_NAME = re.compile(r"^(--[a-z0-9-]+)")


def read_server_flags(path: Path = FLAGS_FILE, *, admin_key: str) -> tuple[str, ...]:
    """The flags of `path`, one per non-comment line, with the admin key filled in."""
    if not _KEY.match(admin_key):
        raise ScaleoutError("the admin key may hold only letters, digits, '-' and '_'")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ScaleoutError(f"{path}: cannot read the server flags ({e})") from e
    flags = tuple(
        line.strip().replace(ADMIN_KEY_PLACEHOLDER, admin_key)
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    )
    bad = [f for f in flags if not _FLAG_NAME.match(f)]
    if bad:
        raise ScaleoutError(f"{path}: not flags: {bad}")
    return flags


@functools.lru_cache(maxsize=1)
def _known_flag_names() -> frozenset[str]:
    try:
        installation = find_tritonserver()
    except ServerError as e:
        raise ScaleoutError(f"cannot check the flags: {e}") from e
    env = server_environment(installation, "flag-check", None)
    try:
        result = subprocess.run([str(installation.server), "--help"], capture_output=True,
                                text=True, env=env, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ScaleoutError(f"{installation.server} --help failed: {e}") from e
    names = frozenset(re.findall(r"^\s+(--[a-z0-9-]+)", result.stdout + result.stderr, re.M))
    if not names:
        raise ScaleoutError(f"{installation.server} --help listed no flags")
    return names


def unsupported_flags(flags: Sequence[str]) -> list[str]:
    """The flags the local tritonserver does not list in its `--help`."""
    known = _known_flag_names()
    unknown = []
    for flag in flags:
        match = _FLAG_NAME.match(flag)
        if match is None or match.group(1) not in known:
            unknown.append(flag)
    return unknown
