"""Find a `tritonserver` installation and assemble the backend directory it is started with.

Where the server comes from (`find_tritonserver`):

1. a `tritonserver` on PATH whose `../backends/python/` holds the Python backend and its stub,
   as inside the NGC Triton container (`/opt/tritonserver`);
2. otherwise the binary shipped in the `nvidia-pytriton` wheel (`make setup` installs it):
   `pytriton/tritonserver/bin/tritonserver`, its shared libraries in `nvidia_pytriton.libs/`
   and one Python-backend stub per Python version. `prepare_backend_dir` assembles a backend
   directory from those pieces, with the stub that matches the running interpreter.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass
from enum import Enum
from importlib.util import find_spec
from pathlib import Path

from tritonkit.errors import ServerError

log = logging.getLogger(__name__)

SERVER_BINARY = "tritonserver"
STUB_BINARY = "triton_python_backend_stub"
PYTHON_BACKEND_LIBRARY = "libtriton_python.so"
PYTHON_BACKEND_UTILS = "triton_python_backend_utils.py"

_SETUP_HINT = (
    "Run `make setup` (it installs nvidia-pytriton, which ships tritonserver) "
    "or use the NGC Triton container, where tritonserver is on PATH."
)


class InstallationKind(str, Enum):
    """Where the tritonserver binary comes from."""

    PATH = "path"  # a tritonserver on PATH with its own backends (NGC container)
    WHEEL = "wheel"  # the nvidia-pytriton wheel in the running environment


@dataclass(frozen=True, kw_only=True)
class TritonInstallation:
    """A tritonserver binary and the Python-backend files that go with it."""

    kind: InstallationKind
    server: Path  # the tritonserver executable
    library_dir: Path | None  # goes on LD_LIBRARY_PATH (the wheel's nvidia_pytriton.libs)
    backends_dir: Path  # the installation's own backend directory
    python_backend_dir: Path  # holds libtriton_python.so and triton_python_backend_utils.py
    python_stub: Path  # triton_python_backend_stub for the running interpreter's major.minor
    python_version: str  # "3.11": the version the stub was chosen for


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _stub_python_version(stub: Path) -> str | None:
    """The `libpython3.X` a stub binary links against, read from its bytes."""
    try:
        match = re.search(rb"libpython(3\.\d+)", stub.read_bytes())
    except OSError:
        return None
    return match.group(1).decode() if match else None


def _installation_on_path() -> TritonInstallation | None:
    found = shutil.which(SERVER_BINARY)
    if found is None:
        return None
    server = Path(found).resolve()
    backends = server.parent.parent / "backends"
    python_dir = backends / "python"
    stub = python_dir / STUB_BINARY
    if not (python_dir / PYTHON_BACKEND_LIBRARY).is_file() or not stub.is_file():
        log.warning(
            "%s on PATH (%s) has no Python backend with a stub in %s; not using it",
            SERVER_BINARY, server, python_dir,
        )
        return None
    stub_version = _stub_python_version(stub)
    if stub_version is not None and stub_version != _python_version():
        log.warning(
            "the Python-backend stub of %s embeds Python %s but this interpreter is %s: "
            "model.py files run under Python %s with that installation's packages",
            server, stub_version, _python_version(), stub_version,
        )
    return TritonInstallation(
        kind=InstallationKind.PATH,
        server=server,
        library_dir=None,
        backends_dir=backends,
        python_backend_dir=python_dir,
        python_stub=stub,
        python_version=stub_version or _python_version(),
    )


def _installation_from_wheel() -> TritonInstallation | None:
    spec = find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations))).resolve()
    root = package / "tritonserver"
    server = root / "bin" / SERVER_BINARY
    python_dir = root / "backends" / "python"
    if not server.is_file() or not (python_dir / PYTHON_BACKEND_LIBRARY).is_file():
        raise ServerError(
            f"nvidia-pytriton is installed at {package} but {server} or "
            f"{python_dir / PYTHON_BACKEND_LIBRARY} is missing; reinstall it. {_SETUP_HINT}"
        )
    stubs = root / "python_backend_stubs"
    stub = stubs / _python_version() / STUB_BINARY
    if not stub.is_file():
        available = sorted(p.name for p in stubs.iterdir()) if stubs.is_dir() else []
        raise ServerError(
            f"nvidia-pytriton at {package} has no Python-backend stub for Python "
            f"{_python_version()} (it has: {', '.join(available) or 'none'}); "
            "use one of those Python versions for the project's virtualenv."
        )
    library_dir = package.parent / "nvidia_pytriton.libs"
    return TritonInstallation(
        kind=InstallationKind.WHEEL,
        server=server,
        library_dir=library_dir if library_dir.is_dir() else None,
        backends_dir=root / "backends",
        python_backend_dir=python_dir,
        python_stub=stub,
        python_version=_python_version(),
    )


def find_tritonserver() -> TritonInstallation:
    """Locate tritonserver: PATH first (NGC container), then the nvidia-pytriton wheel.

    Raises ServerError, with what to do, when neither is usable.
    """
    installation = _installation_on_path() or _installation_from_wheel()
    if installation is None:
        raise ServerError(
            f"no {SERVER_BINARY} found: none on PATH and nvidia-pytriton is not installed in "
            f"{sys.prefix}. {_SETUP_HINT}"
        )
    log.debug("using %s tritonserver %s", installation.kind.value, installation.server)
    return installation


def _link(target: Path, link: Path) -> None:
    """Make `link` point to `target`; keep it when it already does (idempotent)."""
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    if link.is_symlink() or link.exists():
        link.unlink()
    try:
        link.symlink_to(target)
    except OSError:
        shutil.copy2(target, link)


def _tritonserver_library(installation: TritonInstallation) -> Path:
    """The wheel's libtritonserver (renamed by auditwheel), which backends link as
    `libtritonserver.so`."""
    found = sorted(installation.library_dir.glob("libtritonserver*.so*")) if (
        installation.library_dir is not None) else []
    if not found:
        raise ServerError(f"no libtritonserver in {installation.library_dir}; reinstall "
                          "nvidia-pytriton")
    return found[0]


def prepare_backend_dir(installation: TritonInstallation, dest: Path, *,
                        onnxruntime_backend: Path | None = None) -> Path:
    """Return the directory to pass as `--backend-directory`.

    For the wheel, `<dest>/python/` is made with links to libtriton_python.so,
    triton_python_backend_utils.py and the stub for this interpreter, and, given the built
    `onnxruntime_backend` (`tritonkit.server.onnxruntime_backend`), `<dest>/onnxruntime/` with
    it, the onnxruntime wheel's library and the server's; `dest` is returned. A PATH
    installation (NGC) brings a complete backend directory: it is returned unchanged and
    `dest` is not touched. Calling it again is harmless.
    """
    if installation.kind is InstallationKind.PATH:
        return installation.backends_dir
    folders = {dest / "python": {
        installation.python_backend_dir / PYTHON_BACKEND_LIBRARY: PYTHON_BACKEND_LIBRARY,
        installation.python_backend_dir / PYTHON_BACKEND_UTILS: PYTHON_BACKEND_UTILS,
        installation.python_stub: STUB_BINARY,
    }}
    if onnxruntime_backend is not None:
        from tritonkit.server.onnxruntime_backend import (  # noqa: PLC0415
            ORT_SONAME,
            onnxruntime_library,
        )

        folders[dest / "onnxruntime"] = {
            onnxruntime_backend: onnxruntime_backend.name,
            onnxruntime_library(): ORT_SONAME,
            _tritonserver_library(installation): "libtritonserver.so",
        }
    try:
        for folder, links in folders.items():
            folder.mkdir(parents=True, exist_ok=True)
            for target, name in links.items():
                _link(target, folder / name)
    except OSError as e:
        raise ServerError(f"cannot prepare the backend directory {dest}: {e}") from e
    return dest
