"""Which TensorRT runtime loads a plan, and which tritonserver flags a plan needs.

A plan loads only on the TensorRT version that built it (major.minor.patch). A version-compatible
plan (BuilderFlag.VERSION_COMPATIBLE, TensorRT >= 8.6) carries a lean runtime and also loads on
later runtimes of the same major version, and across the major boundaries NVIDIA supports
(8 -> 9 and 10, 10 -> 11: TensorRT support matrix, "Engine Portability"), never on older ones.
"""

from __future__ import annotations

from pathlib import Path

from tritonkit.errors import ToolkitError
from tritonkit.releases import version_triplet

# (built major, runtime major) pairs NVIDIA supports for version-compatible plans.
CROSS_MAJOR = frozenset({(8, 9), (8, 10), (10, 11)})
FIRST_VERSION_COMPATIBLE = (8, 6, 0)


def plan_loads_on(built: str, runtime: str, *, version_compatible: bool) -> bool:
    """Whether a plan built with TensorRT `built` loads on TensorRT `runtime`."""
    have, want = version_triplet(built), version_triplet(runtime)
    if not version_compatible or have < FIRST_VERSION_COMPATIBLE:
        return have == want
    return have <= want and (have[0] == want[0] or (have[0], want[0]) in CROSS_MAJOR)


def read_server_flags(path: Path) -> tuple[str, ...]:
    """The flags of a `triton-server.flags` file: one per line, `#` comments and blanks skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ToolkitError(f"cannot read server flags {path}: {e.strerror}") from e
    return tuple(line.strip() for line in text.splitlines()
                 if line.strip() and not line.lstrip().startswith("#"))
