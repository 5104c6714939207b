"""How a local tritonserver is run: its options, its ports and URLs, and its command line.

Every listener is bound to 127.0.0.1. Dynamic model loading (`explicit` and `poll` control
modes) executes the `model.py` files it loads: it is code execution.

A server meant to be reached by others should restrict the administrative APIs
(`ApiRestriction.for_exposure(header=..., value=...)`): Triton then answers requests to the
model-repository, shared-memory, logging and trace APIs only when they carry that header
(HTTP) or metadata key (gRPC). Triton 2.51 has no request-size flag; the Python steps bound
each BYTES element (`max_element_bytes`) and pixel counts, and `max_batch_size` bounds rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Literal, TypedDict

from tritonkit.errors import ServerError
from tritonkit.server.ports import LOOPBACK, is_port_free, pick_free_ports


class ModelControl(str, Enum):
    """Triton's `--model-control-mode`."""

    NONE = "none"
    EXPLICIT = "explicit"
    POLL = "poll"


ModelControlName = Literal["none", "explicit", "poll"]


class RestrictedApi(str, Enum):
    """API groups Triton can restrict (`--http-restricted-api`, `--grpc-restricted-protocol`)."""

    HEALTH = "health"
    METADATA = "metadata"
    INFERENCE = "inference"
    SHARED_MEMORY = "shared-memory"
    MODEL_CONFIG = "model-config"
    MODEL_REPOSITORY = "model-repository"
    STATISTICS = "statistics"
    TRACE = "trace"
    LOGGING = "logging"


#: What a server reachable by others restricts: loading/unloading models (code execution),
#: registering shared memory, changing log and trace settings.
EXPOSURE_RESTRICTED_APIS: tuple[RestrictedApi, ...] = (
    RestrictedApi.MODEL_REPOSITORY,
    RestrictedApi.SHARED_MEMORY,
    RestrictedApi.LOGGING,
    RestrictedApi.TRACE,
)
_HEADER_PATTERN = re.compile(r"^[a-z0-9][a-z0-9\-]{0,63}$")
_VALUE_PATTERN = re.compile(r"^[A-Za-z0-9_.~+/\-]{8,256}$")


@dataclass(frozen=True, kw_only=True)
class ApiRestriction:
    """APIs answered only when a request carries `header: value` (HTTP header, gRPC metadata).

    The value is a shared secret: at least 8 characters of letters, digits and `_.~+/-`.
    """

    header: str
    value: str
    apis: tuple[RestrictedApi, ...] = EXPOSURE_RESTRICTED_APIS

    def __post_init__(self) -> None:
        if not _HEADER_PATTERN.match(self.header):
            raise ServerError(f"restricted-API header {self.header!r} must be 1-64 lowercase "
                              "letters, digits or '-' (gRPC metadata keys are lowercase)")
        if not _VALUE_PATTERN.match(self.value):
            raise ServerError("the restricted-API value must be 8-256 characters of letters, "
                              "digits and _.~+/- (it is a shared secret)")
        apis = tuple(RestrictedApi(a) for a in self.apis)
        if not apis:
            raise ServerError("an ApiRestriction needs at least one API to restrict")
        object.__setattr__(self, "apis", apis)

    @classmethod
    def for_exposure(cls, *, header: str, value: str) -> ApiRestriction:
        """The restriction a server reachable by others should run with."""
        return cls(header=header, value=value, apis=EXPOSURE_RESTRICTED_APIS)

    def server_args(self) -> list[str]:
        """The same restriction for HTTP and gRPC."""
        setting = f"{','.join(a.value for a in self.apis)}:{self.header}={self.value}"
        return [f"--http-restricted-api={setting}", f"--grpc-restricted-protocol={setting}"]


class ServerSettings(TypedDict, total=False):
    """The keyword arguments of `LocalTriton` and `serve_forever`: see `ServerOptions`."""

    http_port: int | None
    grpc_port: int | None
    metrics_port: int | None
    model_control: ModelControl | ModelControlName
    load_models: Sequence[str]
    log_path: Path | None
    log_verbose: int
    extra_args: Sequence[str]
    startup_timeout_s: float
    stop_timeout_s: float
    restricted_apis: ApiRestriction | None
    working_dir: Path | None


@dataclass(frozen=True, kw_only=True)
class ServerOptions:
    """Options of one local tritonserver, checked when made (ServerError when they conflict).

    Ports left as None are picked free at start. `load_models` needs `model_control`
    "explicit". `extra_args` go to tritonserver as they are; do not pass `--log-file` (the log
    is the server's stdout and stderr, written to `log_path`). `working_dir` is the server's
    working directory (default: an empty directory of its own); nothing a repository serves
    may depend on it. `model_control` is stored as a `ModelControl`, `load_models` and
    `extra_args` as tuples, `log_path` and `working_dir` resolved.
    """

    http_port: int | None = None
    grpc_port: int | None = None
    metrics_port: int | None = None
    model_control: ModelControl | ModelControlName = ModelControl.NONE
    load_models: Sequence[str] = ()
    log_path: Path | None = None
    log_verbose: int = 0
    extra_args: Sequence[str] = ()
    startup_timeout_s: float = 120.0
    stop_timeout_s: float = 30.0
    restricted_apis: ApiRestriction | None = None
    working_dir: Path | None = None

    def __post_init__(self) -> None:
        try:
            control = ModelControl(self.model_control)
        except ValueError as e:
            choices = ", ".join(repr(m.value) for m in ModelControl)
            raise ServerError(
                f"model_control must be one of {choices}, got {self.model_control!r}"
            ) from e
        object.__setattr__(self, "model_control", control)
        object.__setattr__(self, "load_models", tuple(self.load_models))
        object.__setattr__(self, "extra_args", tuple(self.extra_args))
        if self.log_path is not None:
            object.__setattr__(self, "log_path", Path(self.log_path).resolve())
        if self.working_dir is not None:
            object.__setattr__(self, "working_dir", Path(self.working_dir).resolve())
        if self.load_models and control is not ModelControl.EXPLICIT:
            raise ServerError(
                f"load_models={list(self.load_models)} needs model_control='explicit' "
                f"(got {control.value!r})"
            )

    @property
    def control(self) -> ModelControl:
        return ModelControl(self.model_control)

    @property
    def requested_ports(self) -> tuple[int | None, int | None, int | None]:
        """(HTTP, gRPC, metrics) as asked for; None where a free port is to be picked."""
        return self.http_port, self.grpc_port, self.metrics_port

    @property
    def picks_ports(self) -> bool:
        """At least one port is picked free (and can be picked again after a conflict)."""
        return None in self.requested_ports


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
class ServerPorts:
    http: int
    grpc: int
    metrics: int

    @property
    def urls(self) -> ServerURLs:
        return ServerURLs(
            http=f"http://{LOOPBACK}:{self.http}",
            grpc=f"grpc://{LOOPBACK}:{self.grpc}",
            metrics=f"http://{LOOPBACK}:{self.metrics}",
        )


def check_requested_ports(options: ServerOptions) -> None:
    """Raise ServerError when a port asked for explicitly is taken right now."""
    for label, port in zip(("HTTP", "gRPC", "metrics"), options.requested_ports, strict=True):
        if port is not None and not is_port_free(port):
            raise ServerError(
                f"{label} port {port} on {LOOPBACK} is already in use; "
                "choose another port or leave it unset to pick a free one"
            )


def choose_ports(options: ServerOptions) -> ServerPorts:
    """The requested ports, with free ones picked where none was asked for."""
    requested = options.requested_ports
    free = iter(pick_free_ports(sum(p is None for p in requested)))
    http_port, grpc_port, metrics_port = (p if p is not None else next(free) for p in requested)
    return ServerPorts(http=http_port, grpc=grpc_port, metrics=metrics_port)


def server_command(
    options: ServerOptions,
    *,
    server: Path,
    repository: Path,
    backend_dir: Path,
    ports: ServerPorts,
) -> list[str]:
    """The tritonserver command line: loopback only, strict readiness, exit on error."""
    cmd = [
        str(server),
        f"--model-repository={repository}",
        f"--backend-directory={backend_dir}",
        f"--model-control-mode={options.control.value}",
        "--strict-readiness=true",
        "--exit-on-error=true",
        f"--http-address={LOOPBACK}",
        f"--http-port={ports.http}",
        f"--grpc-address={LOOPBACK}",
        f"--grpc-port={ports.grpc}",
        f"--metrics-address={LOOPBACK}",
        f"--metrics-port={ports.metrics}",
        "--reuse-http-port=false",  # never share a port with another server
        "--reuse-grpc-port=false",
        f"--log-verbose={options.log_verbose}",
    ]
    cmd.extend(f"--load-model={name}" for name in options.load_models)
    if options.restricted_apis is not None:
        cmd.extend(options.restricted_apis.server_args())
    cmd.extend(options.extra_args)
    return cmd
