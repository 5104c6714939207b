"""Start a real local `tritonserver` (CPU, no Docker) and stop it without leaving processes behind.

Where the server comes from (`find_tritonserver`):

1. a `tritonserver` on PATH whose `../backends/python/` holds the Python backend and its stub,
   as inside the NGC Triton container (`/opt/tritonserver`);
2. otherwise the binary shipped in the `nvidia-pytriton` wheel (`make setup` installs it):
   `pytriton/tritonserver/bin/tritonserver`, its shared libraries in `nvidia_pytriton.libs/`
   and one Python-backend stub per Python version. `prepare_backend_dir` assembles a backend
   directory from those pieces, with the stub that matches the running interpreter.

Environment of the server (see `_server_environment`):

- `LD_LIBRARY_PATH` gets the wheel's `nvidia_pytriton.libs` and the running interpreter's
  `libpython` directory, so the stub embeds the same Python build as the caller;
- `PATH` starts with the running environment's `bin/`: the stub finds `python3` there and takes
  its `sys.prefix` (and so the virtualenv's site-packages, numpy included) from it;
- the working directory is the project root: the stub runs an isolated interpreter that
  ignores PYTHONPATH (verified), but its `sys.path` starts with '' (the working directory),
  so a `model.py` can `import triton_adapters` and `import processing` even before the
  project is installed into the virtualenv;
- `LOCAL_TRITON_INSTANCE_ID` marks the server and its stubs, for `find_orphans`.

Process lifetime (`LocalTriton.stop`):

- the server runs in its own session and process group (`start_new_session=True`); the Python
  backend starts its stub processes in that group, so `stop()` sends SIGTERM to the server,
  waits, sends SIGKILL if needed, then kills whatever is left in the group;
- on Linux the server is started with `prctl(PR_SET_PDEATHSIG, SIGTERM)`: if the calling
  process dies (crash, SIGKILL), the kernel sends the server SIGTERM and it shuts down and
  ends its stubs. The signal fires when the *thread* that started the server exits, so start
  the server from a thread that outlives it (the main thread, normally).

The server binds HTTP, gRPC and metrics to 127.0.0.1 only. Dynamic model loading (`explicit`
and `poll` control modes) executes the `model.py` files it loads: it is code execution.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import http.client
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from importlib.util import find_spec
from pathlib import Path
from types import FrameType, TracebackType
from typing import Literal

from build_scripts.errors import ServerError
from build_scripts.ports import LOOPBACK, is_port_free, pick_free_ports

log = logging.getLogger(__name__)

SERVER_BINARY = "tritonserver"
STUB_BINARY = "triton_python_backend_stub"
PYTHON_BACKEND_LIBRARY = "libtriton_python.so"
PYTHON_BACKEND_UTILS = "triton_python_backend_utils.py"
INSTANCE_ENV_VAR = "LOCAL_TRITON_INSTANCE_ID"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

_SETUP_HINT = (
    "Run `make setup` (it installs nvidia-pytriton, which ships tritonserver) "
    "or use the NGC Triton container, where tritonserver is on PATH."
)
_PORT_ATTEMPTS = 3
_POLL_INTERVAL_S = 0.1
_GROUP_KILL_WAIT_S = 5.0
_MAX_REASON_LINES = 12

# Log lines that look like errors but are expected on a machine without a GPU.
_HARMLESS = (
    "Failed to initialize NVML",
    "CudaDriverHelper has not been initialized",
    "DCGM unable to start",
    "unable to create stream",
    "CUDA driver version is insufficient",
    "Unable to allocate pinned system memory",
    "unable to get number of CUDA devices",
)
_LOG_MESSAGE = re.compile(r'^[IWEF]\d{4} [\d:.]+\s+\d+\s+\S+\]\s+"(?P<msg>.*)"\s*$')
_FAILED_LOAD = re.compile(
    r"^failed to load '(?P<name>[^']+)' version (?P<version>\d+): (?P<why>.*)$", re.DOTALL
)
_FAILED_SERVICE = re.compile(r"^failed to start (?P<service>\w+) service: (?P<why>.*)$", re.DOTALL)
_PORT_IN_USE = re.compile(r"already in use|Address already in use", re.IGNORECASE)


class InstallationKind(str, Enum):
    """Where the tritonserver binary comes from."""

    PATH = "path"  # a tritonserver on PATH with its own backends (NGC container)
    WHEEL = "wheel"  # the nvidia-pytriton wheel in the running environment


class ModelControl(str, Enum):
    """Triton's `--model-control-mode`."""

    NONE = "none"
    EXPLICIT = "explicit"
    POLL = "poll"


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


@dataclass(frozen=True, kw_only=True)
class ServerURLs:
    """Where a running server listens. Metrics are served under `<metrics>/metrics`."""

    http: str  # "http://127.0.0.1:P"
    grpc: str  # "grpc://127.0.0.1:Q"
    metrics: str  # "http://127.0.0.1:M"

    @property
    def http_hostport(self) -> str:
        """`127.0.0.1:P`, the form `tritonclient.http.InferenceServerClient(url=...)` takes."""
        return self.http.split("://", 1)[1]

    @property
    def grpc_hostport(self) -> str:
        """`127.0.0.1:Q`, the form `tritonclient.grpc.InferenceServerClient(url=...)` takes."""
        return self.grpc.split("://", 1)[1]


@dataclass(frozen=True, kw_only=True)
class ModelIndexEntry:
    """One row of Triton's model repository index (POST /v2/repository/index)."""

    name: str
    version: str | None
    state: str | None  # READY, UNAVAILABLE, LOADING, UNLOADING, ...
    reason: str | None


@dataclass(frozen=True, kw_only=True)
class _Ports:
    http: int
    grpc: int
    metrics: int


# --------------------------------------------------------------------------- installation


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


def prepare_backend_dir(installation: TritonInstallation, dest: Path) -> Path:
    """Return the directory to pass as `--backend-directory`.

    For the wheel, `<dest>/python/` is made with links to libtriton_python.so,
    triton_python_backend_utils.py and the stub for this interpreter, and `dest` is returned.
    A PATH installation (NGC) brings a complete backend directory: it is returned unchanged
    and `dest` is not touched. Calling it again is harmless.
    """
    if installation.kind is InstallationKind.PATH:
        return installation.backends_dir
    python_dir = dest / "python"
    try:
        python_dir.mkdir(parents=True, exist_ok=True)
        _link(installation.python_backend_dir / PYTHON_BACKEND_LIBRARY,
              python_dir / PYTHON_BACKEND_LIBRARY)
        _link(installation.python_backend_dir / PYTHON_BACKEND_UTILS,
              python_dir / PYTHON_BACKEND_UTILS)
        _link(installation.python_stub, python_dir / STUB_BINARY)
    except OSError as e:
        raise ServerError(f"cannot prepare the backend directory {python_dir}: {e}") from e
    return dest


# --------------------------------------------------------------------------- processes


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


def _pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    members = []
    for pid in _pids():
        stat = _proc_stat(pid)
        if stat is not None and stat[1] == pgid and stat[0] != "Z":
            members.append(pid)
    return members


def find_orphans(
    *,
    instance_id: str | None = None,
    model_repository: Path | None = None,
    installation: TritonInstallation | None = None,
) -> list[int]:
    """PIDs of live tritonserver / Python-stub processes of this installation, from /proc.

    `instance_id` keeps only the processes of one `LocalTriton` (its `instance_id`);
    `model_repository` keeps only those whose command line names that repository.
    """
    inst = installation or find_tritonserver()
    binaries = {inst.server.resolve(), inst.python_stub.resolve()}
    marker = f"{INSTANCE_ENV_VAR}={instance_id}".encode() if instance_id else None
    repo = str(model_repository.resolve()).encode() if model_repository else None
    found = []
    for pid in _pids():
        try:
            exe = Path(os.readlink(f"/proc/{pid}/exe"))
        except OSError:
            continue
        if exe not in binaries:
            continue
        stat = _proc_stat(pid)
        if stat is None or stat[0] == "Z":
            continue
        if marker is not None and marker not in (_read_proc(pid, "environ") or b"").split(b"\0"):
            continue
        if repo is not None and repo not in (_read_proc(pid, "cmdline") or b""):
            continue
        found.append(pid)
    return sorted(found)


_PR_SET_PDEATHSIG = 1


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


# --------------------------------------------------------------------------- environment


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


def _server_environment(
    installation: TritonInstallation, instance_id: str, overrides: Mapping[str, str] | None
) -> dict[str, str]:
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


# --------------------------------------------------------------------------- log reading


def _log_message(line: str) -> str:
    """The message of a Triton log line, unquoted and unescaped; other lines unchanged."""
    match = _LOG_MESSAGE.match(line)
    if match is None:
        return line.strip()
    quoted = match.group("msg")
    try:
        message = json.loads(f'"{quoted}"')
    except json.JSONDecodeError:
        return quoted
    return message if isinstance(message, str) else quoted


def _shorten(text: str, max_lines: int = _MAX_REASON_LINES) -> str:
    lines = [ln.rstrip() for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], f"... ({len(lines) - max_lines} more lines in the log)"]
    return "\n".join(lines)


@dataclass(frozen=True, kw_only=True)
class _LoadFailure:
    model: str
    version: str
    reason: str


class _LogReader:
    """Reads a growing server log and keeps the lines that explain a failed start."""

    def __init__(self, path: Path, *, offset: int = 0) -> None:
        self._path = path
        self._offset = offset
        self._partial = ""
        self.load_failures: list[_LoadFailure] = []
        self.service_failures: list[str] = []
        self.errors: list[str] = []
        self.tail: list[str] = []

    def poll(self) -> None:
        try:
            with self._path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return
        self._offset += len(chunk)
        text = self._partial + chunk.decode("utf-8", errors="replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._consume(line)

    def _consume(self, line: str) -> None:
        if not line.strip():
            return
        self.tail = [*self.tail[-29:], line.rstrip()]
        message = _log_message(line)
        if (m := _FAILED_LOAD.match(message)) is not None:
            self.load_failures.append(
                _LoadFailure(model=m["name"], version=m["version"], reason=m["why"])
            )
        elif (m := _FAILED_SERVICE.match(message)) is not None:
            self.service_failures.append(message)
        elif (line.startswith(("E", "F")) or line.startswith("error:")) and not any(
            h in line for h in _HARMLESS
        ):
            self.errors.append(message)

    def port_conflict(self) -> bool:
        return any(_PORT_IN_USE.search(s) for s in self.service_failures)

    def explain(self, *, tail_lines: int = _MAX_REASON_LINES) -> str:
        """The server's own reasons, most specific first."""
        if self.load_failures:
            return "\n".join(
                f"model '{f.model}' version {f.version} failed to load: {_shorten(f.reason)}"
                for f in self.load_failures
            )
        if self.service_failures:
            return "\n".join(self.service_failures)
        if self.errors:
            return _shorten("\n".join(self.errors))
        if self.tail:
            return "no error in the log; its last lines:\n" + "\n".join(self.tail[-tail_lines:])
        return "the log is empty"


# --------------------------------------------------------------------------- HTTP


def _http_request(
    port: int, method: str, path: str, *, body: bytes | None = None, timeout_s: float = 2.0
) -> tuple[int, bytes] | None:
    """(status, body) of one request to the local server, or None when it cannot be reached.

    http.client talks to 127.0.0.1 directly; urllib would honour proxy variables.
    """
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout_s)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _parse_index(payload: bytes) -> list[ModelIndexEntry]:
    rows = json.loads(payload)
    if not isinstance(rows, list):
        raise ServerError(f"unexpected repository index: {payload[:200]!r}")
    return [
        ModelIndexEntry(
            name=str(row.get("name", "")),
            version=row.get("version"),
            state=row.get("state"),
            reason=row.get("reason") or None,
        )
        for row in rows
        if isinstance(row, dict)
    ]


# --------------------------------------------------------------------------- the server


class LocalTriton:
    """A real tritonserver on 127.0.0.1, as a context manager.

    >>> with LocalTriton(repo) as server:           # doctest: +SKIP
    ...     client = httpclient.InferenceServerClient(server.urls.http_hostport)

    Ports left as None are picked free (and picked again if another process takes one
    first). `start()` returns once /v2/health/ready answers 200 (with `--strict-readiness`,
    that means every loaded model is ready) and raises ServerError with the server's own
    reason otherwise. `extra_args` go to tritonserver as they are; do not pass `--log-file`
    (the log is the server's stdout and stderr, written to `log_path`).
    """

    def __init__(
        self,
        model_repository: Path,
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        model_control: ModelControl | Literal["none", "explicit", "poll"] = "none",
        load_models: Sequence[str] = (),
        log_path: Path | None = None,
        log_verbose: int = 0,
        extra_args: Sequence[str] = (),
        startup_timeout_s: float = 120.0,
        stop_timeout_s: float = 30.0,
        env: Mapping[str, str] | None = None,
        installation: TritonInstallation | None = None,
    ) -> None:
        self._repository = Path(model_repository).resolve()
        self._requested = (http_port, grpc_port, metrics_port)
        try:
            self._control = ModelControl(model_control)
        except ValueError as e:
            choices = ", ".join(repr(m.value) for m in ModelControl)
            raise ServerError(
                f"model_control must be one of {choices}, got {model_control!r}"
            ) from e
        self._load_models = tuple(load_models)
        self._log_path = Path(log_path).resolve() if log_path is not None else None
        self._log_verbose = log_verbose
        self._extra_args = tuple(extra_args)
        self._startup_timeout_s = startup_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._env = dict(env) if env is not None else None
        self._installation = installation
        self._instance_id = uuid.uuid4().hex
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports: _Ports | None = None
        self._workdir: Path | None = None
        self._startup_s: float | None = None
        self._launched_at = 0.0
        if self._load_models and self._control is not ModelControl.EXPLICIT:
            raise ServerError(
                f"load_models={list(self._load_models)} needs model_control='explicit' "
                f"(got {self._control.value!r})"
            )

    # -- properties -----------------------------------------------------------------------

    @property
    def urls(self) -> ServerURLs:
        if self._ports is None or self._proc is None:
            raise ServerError("the server is not running; call start() first")
        p = self._ports
        return ServerURLs(
            http=f"http://{LOOPBACK}:{p.http}",
            grpc=f"grpc://{LOOPBACK}:{p.grpc}",
            metrics=f"http://{LOOPBACK}:{p.metrics}",
        )

    @property
    def log_path(self) -> Path | None:
        """The server log (stdout and stderr of tritonserver); kept after stop()."""
        return self._log_path

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def instance_id(self) -> str:
        """Marks this server and its stubs in their environment (see `find_orphans`)."""
        return self._instance_id

    @property
    def model_repository(self) -> Path:
        return self._repository

    @property
    def startup_s(self) -> float | None:
        """Seconds from launching tritonserver to readiness, for the last successful start."""
        return self._startup_s

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def exit_description(self) -> str:
        """How the server process ended ("exited with code 1", "was killed by SIGKILL")."""
        code = self._proc.poll() if self._proc is not None else None
        if code is None:
            return "is running" if self._proc is not None else "was not started"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with code {code}"

    def failure_reason(self) -> str:
        """The server's own explanation of a failure, read from its log."""
        if self._log_path is None:
            return "no server log"
        reader = _LogReader(self._log_path)
        reader.poll()
        return reader.explain(tail_lines=5)

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> LocalTriton:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> ServerURLs:
        """Launch tritonserver and wait until it is ready; stops it again on any failure."""
        if self._proc is not None:
            raise ServerError(f"the server is already started (pid {self._proc.pid})")
        if not self._repository.is_dir():
            raise ServerError(f"model repository {self._repository} is not a directory")
        self._check_requested_ports()
        installation = self._installation or find_tritonserver()
        try:
            self._workdir = Path(tempfile.mkdtemp(prefix="local-triton-"))
            if self._log_path is None:
                self._log_path = self._workdir.parent / f"tritonserver-{self._instance_id}.log"
            backend_dir = prepare_backend_dir(installation, self._workdir / "backends")
            env = _server_environment(installation, self._instance_id, self._env)
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                self._ports = self._choose_ports()
                reader = self._launch(installation, backend_dir, env, first=attempt == 1)
                if self._wait_ready(reader, retry_on_port_conflict=attempt < _PORT_ATTEMPTS):
                    break
                log.info("a port was taken before tritonserver bound it; retrying")
                self._terminate()
        except BaseException:
            try:
                self.stop()
            except ServerError as stop_error:  # keep the start failure as the error raised
                log.warning("cleanup after a failed start: %s", stop_error)
            raise
        return self.urls

    def stop(self) -> None:
        """Stop the server and every process in its group. Safe to call more than once."""
        try:
            self._terminate()
        finally:
            self._proc = None
            self._ports = None
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None

    # -- queries ----------------------------------------------------------------------------

    def repository_index(self) -> list[ModelIndexEntry]:
        """Every model in the repository with its state and, when it failed, the reason."""
        if self._ports is None:
            raise ServerError("the server is not running; call start() first")
        result = _http_request(self._ports.http, "POST", "/v2/repository/index", body=b"{}")
        if result is None or result[0] != 200:
            raise ServerError(
                f"repository index request to {self.urls.http} failed: "
                f"{'no answer' if result is None else f'HTTP {result[0]}: {result[1][:300]!r}'}"
            )
        return _parse_index(result[1])

    # -- internals --------------------------------------------------------------------------

    def _check_requested_ports(self) -> None:
        for label, port in zip(("HTTP", "gRPC", "metrics"), self._requested, strict=True):
            if port is not None and not is_port_free(port):
                raise ServerError(
                    f"{label} port {port} on {LOOPBACK} is already in use; "
                    "choose another port or leave it unset to pick a free one"
                )

    def _choose_ports(self) -> _Ports:
        free = iter(pick_free_ports(sum(p is None for p in self._requested)))
        http_port, grpc_port, metrics_port = (
            p if p is not None else next(free) for p in self._requested
        )
        return _Ports(http=http_port, grpc=grpc_port, metrics=metrics_port)

    def _command(self, installation: TritonInstallation, backend_dir: Path) -> list[str]:
        assert self._ports is not None
        cmd = [
            str(installation.server),
            f"--model-repository={self._repository}",
            f"--backend-directory={backend_dir}",
            f"--model-control-mode={self._control.value}",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--http-address={LOOPBACK}",
            f"--http-port={self._ports.http}",
            f"--grpc-address={LOOPBACK}",
            f"--grpc-port={self._ports.grpc}",
            f"--metrics-address={LOOPBACK}",
            f"--metrics-port={self._ports.metrics}",
            "--reuse-http-port=false",  # never share a port with another server
            "--reuse-grpc-port=false",
            f"--log-verbose={self._log_verbose}",
        ]
        cmd.extend(f"--load-model={name}" for name in self._load_models)
        cmd.extend(self._extra_args)
        return cmd

    def _launch(
        self,
        installation: TritonInstallation,
        backend_dir: Path,
        env: Mapping[str, str],
        *,
        first: bool,
    ) -> _LogReader:
        assert self._log_path is not None
        cmd = self._command(installation, backend_dir)
        log.debug("starting %s", " ".join(cmd))
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("wb" if first else "ab") as log_file:
            offset = log_file.tell()
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=dict(env),
                    cwd=PROJECT_ROOT,  # '' on the stub's sys.path: the project imports
                    start_new_session=True,
                    preexec_fn=_die_with_caller(),  # noqa: PLW1509 (only prctl, no locks)
                )
            except OSError as e:
                raise ServerError(f"cannot run {installation.server}: {e}") from e
        self._launched_at = time.monotonic()
        return _LogReader(self._log_path, offset=offset)  # only this attempt's lines

    def _wait_ready(self, reader: _LogReader, *, retry_on_port_conflict: bool) -> bool:
        """True when ready; False when a picked port was taken (retry); raises otherwise."""
        assert self._proc is not None and self._ports is not None
        deadline = self._launched_at + self._startup_timeout_s
        while True:
            code = self._proc.poll()
            reader.poll()
            if code is not None:
                if retry_on_port_conflict and reader.port_conflict() and None in self._requested:
                    return False
                raise ServerError(
                    f"tritonserver {self.exit_description()} before it was ready:\n"
                    f"{reader.explain()}\nServer log: {self._log_path}"
                )
            ready = _http_request(self._ports.http, "GET", "/v2/health/ready", timeout_s=1.0)
            if ready is not None and ready[0] == 200:
                self._startup_s = time.monotonic() - self._launched_at
                log.info(
                    "tritonserver (pid %d) ready after %.1f s: HTTP %s, gRPC %s, metrics %s; "
                    "log %s",
                    self._proc.pid, self._startup_s, self.urls.http, self.urls.grpc,
                    self.urls.metrics, self._log_path,
                )
                return True
            if ready is not None and reader.load_failures:
                # Up but not ready (e.g. --exit-on-error=false in extra_args): models failed.
                raise ServerError(
                    f"tritonserver is up but not ready:\n{self._index_or_log(reader)}\n"
                    f"Server log: {self._log_path}"
                )
            if time.monotonic() > deadline:
                state = self._index_or_log(reader) if ready is not None else reader.explain()
                raise ServerError(
                    f"tritonserver was not ready after {self._startup_timeout_s:.0f} s:\n"
                    f"{state}\nServer log: {self._log_path}"
                )
            time.sleep(_POLL_INTERVAL_S)

    def _index_or_log(self, reader: _LogReader) -> str:
        try:
            entries = self.repository_index()
        except (ServerError, ValueError):
            return reader.explain()
        rows = [
            f"model '{e.name}' version {e.version or '-'}: {e.state or 'UNKNOWN'}"
            + (f": {_shorten(e.reason)}" if e.reason else "")
            for e in entries
            if e.state != "READY"
        ]
        return "\n".join(rows) if rows else reader.explain()

    def _terminate(self) -> None:
        proc = self._proc
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the server leads its own process group
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self._stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning(
                    "tritonserver (pid %d) did not stop within %.0f s; killing it",
                    proc.pid, self._stop_timeout_s,
                )
                proc.kill()
                proc.wait()
        deadline = time.monotonic() + _GROUP_KILL_WAIT_S
        while members := _group_members(pgid):
            if time.monotonic() > deadline:
                raise ServerError(
                    f"processes {members} of tritonserver's group {pgid} survived SIGKILL"
                )
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)


# --------------------------------------------------------------------------- serve_forever


class _StopRequested(BaseException):
    """SIGINT/SIGTERM arrived while the server was still starting."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def serve_forever(
    model_repository: Path,
    *,
    http_port: int | None = None,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    model_control: ModelControl | Literal["none", "explicit", "poll"] = "none",
    load_models: Sequence[str] = (),
    log_path: Path | None = None,
    log_verbose: int = 0,
    extra_args: Sequence[str] = (),
    startup_timeout_s: float = 120.0,
    on_ready: Callable[[ServerURLs], None] | None = None,
) -> int:
    """Serve `model_repository` until SIGINT or SIGTERM; for the `serve` command.

    `on_ready(urls)` is called once the server is ready; the log path is logged at INFO.
    Returns 0 after a clean stop on a signal, 128 + signal number when the signal came
    during startup. Raises ServerError when the server fails to start or dies while serving.
    Must run in the main thread (it installs signal handlers; it restores them on return).
    """
    stop = threading.Event()
    received: list[int] = []
    started = False

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()
        if not started:
            raise _StopRequested(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with LocalTriton(
            model_repository,
            http_port=http_port,
            grpc_port=grpc_port,
            metrics_port=metrics_port,
            model_control=model_control,
            load_models=load_models,
            log_path=log_path,
            log_verbose=log_verbose,
            extra_args=extra_args,
            startup_timeout_s=startup_timeout_s,
        ) as server:
            started = True
            if on_ready is not None:
                on_ready(server.urls)
            while not stop.wait(0.5):
                if not server.is_running():
                    raise ServerError(
                        f"tritonserver (pid {server.pid}) {server.exit_description()} while "
                        f"serving:\n{server.failure_reason()}\nServer log: {server.log_path}"
                    )
            log.info("received %s; stopping tritonserver", signal.Signals(received[0]).name)
        return 0
    except _StopRequested as e:
        log.info("received %s during startup; stopped", signal.Signals(e.signum).name)
        return 128 + e.signum
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
