"""Start a real local `tritonserver` (CPU, no Docker) and stop it without leaving processes behind.

The pieces, one module each:

- `triton_install`: where the server comes from (`find_tritonserver`: PATH
  first, as in the NGC container, then the nvidia-pytriton wheel) and the backend directory
  with the Python-backend stub that matches the running interpreter (`prepare_backend_dir`);
- `server_environment`: `LD_LIBRARY_PATH` and `PATH` for the server, so that
  the stub embeds this Python build and uses this virtualenv, and the instance marker that
  `find_orphans` looks for;
- `server_options`: the options (`ServerOptions`), the ports and the command
  line; every listener is bound to 127.0.0.1;
- `process_tree`: the server leads its own process group and gets
  `PR_SET_PDEATHSIG`; stopping it is SIGTERM, wait, SIGKILL, then the rest of the group;
- `server_log` and `server_http`: readiness, the repository
  index and the server's own reason when a start fails.

The server runs in a working directory unrelated to the checkout (an empty directory of its
own, or `working_dir`), as in the serving image, so a repository that only works from the
checkout fails here too. The stub imports `tritonkit.runtime` and `tritonkit.processing` from
the environment: `PATH` makes it take this virtualenv's `sys.prefix`, whose site-packages hold
the installed `tritonkit` (editable, by `make setup`; the wheel, in the serving image).
PYTHONPATH cannot add them: the stub runs an isolated interpreter that ignores it (verified).

The server gets SIGTERM when the *thread* that started it exits, so start it from a thread
that outlives it (the main thread, normally). Dynamic model loading (`explicit` and `poll`
control modes) executes the `model.py` files it loads: it is code execution.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

from tritonkit.errors import NativeBuildError, ServerError
from tritonkit.server.onnxruntime_backend import onnxruntime_backend_library, serves_onnxruntime
from tritonkit.server.process_tree import (
    describe_exit,
    find_processes,
    spawn_group_leader,
    stop_group,
)
from tritonkit.server.server_environment import INSTANCE_ENV_VAR, server_environment
from tritonkit.server.server_http import ModelIndexEntry, readiness, repository_index
from tritonkit.server.server_log import ServerLogReader, describe_unready, explain_log
from tritonkit.server.server_options import (
    ModelControl,
    ServerOptions,
    ServerPorts,
    ServerSettings,
    ServerURLs,
    check_requested_ports,
    choose_ports,
    server_command,
)
from tritonkit.server.triton_install import (
    STUB_BINARY,
    InstallationKind,
    TritonInstallation,
    find_tritonserver,
    prepare_backend_dir,
)

if TYPE_CHECKING:
    from typing import Unpack

__all__ = [
    "INSTANCE_ENV_VAR",
    "STUB_BINARY",
    "InstallationKind",
    "LocalTriton",
    "ModelControl",
    "ModelIndexEntry",
    "ServerOptions",
    "ServerSettings",
    "ServerURLs",
    "TritonInstallation",
    "find_orphans",
    "find_tritonserver",
    "prepare_backend_dir",
    "serve_forever",
]

log = logging.getLogger(__name__)

_SERVER_NAME = "tritonserver"
_PORT_ATTEMPTS = 3
_POLL_INTERVAL_S = 0.1


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
    return find_processes(
        executables={inst.server.resolve(), inst.python_stub.resolve()},
        environ_entry=f"{INSTANCE_ENV_VAR}={instance_id}".encode() if instance_id else None,
        cmdline_part=str(model_repository.resolve()).encode() if model_repository else None,
    )


class LocalTriton:
    """A real tritonserver on 127.0.0.1, as a context manager.

    >>> with LocalTriton(repo) as server:           # doctest: +SKIP
    ...     client = httpclient.InferenceServerClient(server.urls.http_hostport)

    The keyword options are those of `ServerOptions` (ports, model control, log, timeouts);
    `env` adds to the server's environment and `installation` skips `find_tritonserver()`.
    Ports left as None are picked free (and picked again if another process takes one
    first). `start()` returns once /v2/health/ready answers 200 (with `--strict-readiness`,
    that means every loaded model is ready) and raises ServerError with the server's own
    reason otherwise.
    """

    def __init__(
        self,
        model_repository: Path,
        *,
        env: Mapping[str, str] | None = None,
        installation: TritonInstallation | None = None,
        **options: Unpack[ServerSettings],
    ) -> None:
        self._repository = Path(model_repository).resolve()
        self._options = ServerOptions(**options)
        self._log_path = self._options.log_path
        self._env = dict(env) if env is not None else None
        self._installation = installation
        self._instance_id = uuid.uuid4().hex
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports: ServerPorts | None = None
        self._workdir: Path | None = None
        self._startup_s: float | None = None
        self._launched_at = 0.0

    # -- properties -----------------------------------------------------------------------

    @property
    def urls(self) -> ServerURLs:
        if self._ports is None or self._proc is None:
            raise ServerError("the server is not running; call start() first")
        return self._ports.urls

    @property
    def options(self) -> ServerOptions:
        return self._options

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
        return describe_exit(self._proc)

    def failure_reason(self) -> str:
        """The server's own explanation of a failure, read from its log."""
        if self._log_path is None:
            return "no server log"
        return explain_log(self._log_path, tail_lines=5)

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
        working_dir = self._options.working_dir
        if working_dir is not None and not working_dir.is_dir():
            raise ServerError(f"working directory {working_dir} is not a directory")
        check_requested_ports(self._options)
        installation = self._installation or find_tritonserver()
        try:
            self._workdir = Path(tempfile.mkdtemp(prefix="local-triton-"))
            if self._log_path is None:
                self._log_path = self._workdir.parent / f"tritonserver-{self._instance_id}.log"
            backend_dir = prepare_backend_dir(
                installation, self._workdir / "backends",
                onnxruntime_backend=self._onnxruntime_backend(installation))
            env = server_environment(installation, self._instance_id, self._env)
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                self._ports = choose_ports(self._options)
                command = server_command(
                    self._options, server=installation.server, repository=self._repository,
                    backend_dir=backend_dir, ports=self._ports,
                )
                reader = self._launch(command, env, first=attempt == 1)
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
        return repository_index(self._ports.http)

    # -- internals --------------------------------------------------------------------------

    def _launch(
        self, command: list[str], env: Mapping[str, str], *, first: bool
    ) -> ServerLogReader:
        assert self._log_path is not None
        log.debug("starting %s", " ".join(command))
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("wb" if first else "ab") as log_file:
            offset = log_file.tell()
            self._proc = spawn_group_leader(command, env=env, cwd=self._working_dir(),
                                            output=log_file)
        self._launched_at = time.monotonic()
        return ServerLogReader(self._log_path, offset=offset)  # only this attempt's lines

    def _onnxruntime_backend(self, installation: TritonInstallation) -> Path | None:
        """Triton's ONNX Runtime backend when the wheel's server must serve ONNX models
        (built once and cached, `tritonkit.server.onnxruntime_backend`); None otherwise."""
        if installation.kind is not InstallationKind.WHEEL or not serves_onnxruntime(
                self._repository):
            return None
        try:
            return onnxruntime_backend_library()
        except NativeBuildError as e:
            raise ServerError(f"{self._repository} has ONNX Runtime models, and Triton's ONNX "
                              f"Runtime backend is not available for this server: {e}") from e

    def _working_dir(self) -> Path:
        """The server's working directory: `working_dir`, else an empty one of its own."""
        if self._options.working_dir is not None:
            return self._options.working_dir
        assert self._workdir is not None
        own = self._workdir / "cwd"
        own.mkdir(exist_ok=True)
        return own

    def _wait_ready(self, reader: ServerLogReader, *, retry_on_port_conflict: bool) -> bool:
        """True when ready; False when a picked port was taken (retry); raises otherwise."""
        assert self._proc is not None and self._ports is not None
        timeout_s = self._options.startup_timeout_s
        deadline = self._launched_at + timeout_s
        while True:
            code = self._proc.poll()
            reader.poll()
            if code is not None:
                if (
                    retry_on_port_conflict
                    and reader.port_conflict()
                    and self._options.picks_ports
                ):
                    return False
                raise ServerError(
                    f"tritonserver {self.exit_description()} before it was ready:\n"
                    f"{reader.explain()}\nServer log: {self._log_path}"
                )
            ready = readiness(self._ports.http)
            if ready is not None and ready.status == 200:
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
                    f"tritonserver was not ready after {timeout_s:.0f} s:\n"
                    f"{state}\nServer log: {self._log_path}"
                )
            time.sleep(_POLL_INTERVAL_S)

    def _index_or_log(self, reader: ServerLogReader) -> str:
        try:
            unready = describe_unready(self.repository_index())
        except (ServerError, ValueError):
            return reader.explain()
        return unready if unready is not None else reader.explain()

    def _terminate(self) -> None:
        if self._proc is not None:
            stop_group(self._proc, timeout_s=self._options.stop_timeout_s, name=_SERVER_NAME)


# --------------------------------------------------------------------------- serve_forever


class _StopRequested(BaseException):
    """SIGINT/SIGTERM arrived while the server was still starting."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def serve_forever(
    model_repository: Path,
    *,
    on_ready: Callable[[ServerURLs], None] | None = None,
    **options: Unpack[ServerSettings],
) -> int:
    """Serve `model_repository` until SIGINT or SIGTERM; for the `serve` command.

    The keyword options are those of `ServerOptions`, as for `LocalTriton`.
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
        with LocalTriton(model_repository, **options) as server:
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
