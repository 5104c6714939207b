"""The environment a local tritonserver (and the Python-backend stubs it starts) runs in.

- `LD_LIBRARY_PATH` gets the wheel's `nvidia_pytriton.libs` and the running interpreter's
  `libpython` directory, so the stub embeds the same Python build as the caller;
- `PATH` starts with the running environment's `bin/`: the stub finds `python3` there and takes
  its `sys.prefix` (and so the virtualenv's site-packages, numpy included) from it;
- `LOCAL_TRITON_INSTANCE_ID` marks the server and its stubs, so that their processes can be
  found again from /proc (`tritonkit.server.local_triton.find_orphans`).
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path

from tritonkit.server.triton_install import InstallationKind, TritonInstallation

INSTANCE_ENV_VAR = "LOCAL_TRITON_INSTANCE_ID"


def _prepend(paths: Sequence[str], current: str | None) -> str:
    parts = [p for p in paths if p]
    if current:
        parts.extend(p for p in current.split(os.pathsep) if p and p not in parts)
    return os.pathsep.join(parts)


def _python_library_dir() -> str | None:
    """Directory of the running interpreter's shared libpython, when it has one."""
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    if libdir and soname and (Path(libdir) / soname).exists():
        return str(libdir)
    return None


def server_environment(
    installation: TritonInstallation, instance_id: str, overrides: Mapping[str, str] | None
) -> dict[str, str]:
    """This process's environment plus `overrides`, set up to run `installation`'s server."""
    env = dict(os.environ)
    env.update(overrides or {})
    libraries: list[str] = []
    if installation.library_dir is not None:
        libraries.append(str(installation.library_dir))
    if installation.kind is InstallationKind.WHEEL:
        python_lib = _python_library_dir()
        if python_lib is not None:
            libraries.append(python_lib)
    if libraries:
        env["LD_LIBRARY_PATH"] = _prepend(libraries, env.get("LD_LIBRARY_PATH"))
    env["PATH"] = _prepend([str(Path(sys.exec_prefix) / "bin")], env.get("PATH"))
    env[INSTANCE_ENV_VAR] = instance_id
    return env
