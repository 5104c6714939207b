"""A real nginx in front of Triton replicas: HTTP on one port (`proxy_pass` to an upstream)
and gRPC on another (`grpc_pass` over HTTP/2), run in the foreground from a generated config.

The rules are those of docker/nginx/gateway.conf: inference requests are idempotent, so a
request that fails on one replica (connection refused or reset, 502/503) goes to the next one
(`non_idempotent`), a failed replica is skipped for `fail_timeout_s`, request bodies are
limited to `max_body_mb`, and the restricted admin paths are refused.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from harness.scaleout.errors import ScaleoutError
from tritonkit.server import LOOPBACK, pick_free_ports

log = logging.getLogger(__name__)

_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


@dataclass(frozen=True, kw_only=True)
class Upstream:
    """One replica: its HTTP and gRPC `host:port`."""

    http: str
    grpc: str


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    """What the generated nginx config says."""

    http_port: int
    grpc_port: int
    upstreams: tuple[Upstream, ...]
    prefix: Path  # nginx's prefix: temp paths, pid file and error log live here
    fail_timeout_s: int = 5
    next_upstream_tries: int = 3
    max_body_mb: int = 64
    worker_processes: int = 1


def _block(name: str, lines: Sequence[str], indent: str = "") -> list[str]:
    inner = indent + "    "
    return [f"{indent}{name} {{", *(f"{inner}{line}" for line in lines), f"{indent}}}"]


def render_config(settings: GatewaySettings) -> str:
    """The nginx.conf text for `settings` (nginx syntax, not a Triton config)."""
    if not settings.upstreams:
        raise ScaleoutError("the gateway needs at least one upstream")
    prefix = settings.prefix
    server_opts = f"max_fails=1 fail_timeout={settings.fail_timeout_s}s"
    retry = "error timeout http_502 http_503 non_idempotent"
    admin = r"^/v2/(repository|logging|trace|systemsharedmemory|cudasharedmemory)"
    http_lines = [
        f"client_max_body_size {settings.max_body_mb}m;",
        "access_log off;",
        "server_tokens off;",
        f"client_body_temp_path {prefix / 'client_body'};",
        f"proxy_temp_path {prefix / 'proxy'};",
        f"fastcgi_temp_path {prefix / 'fastcgi'};",
        f"uwsgi_temp_path {prefix / 'uwsgi'};",
        f"scgi_temp_path {prefix / 'scgi'};",
        *_block("upstream triton_http", [
            *(f"server {u.http} {server_opts};" for u in settings.upstreams),
            "keepalive 32;",
        ]),
        *_block("upstream triton_grpc", [
            *(f"server {u.grpc} {server_opts};" for u in settings.upstreams),
            "keepalive 32;",
        ]),
        *_block("server", [
            f"listen {LOOPBACK}:{settings.http_port};",
            *_block("location /", [
                "proxy_pass http://triton_http;",
                "proxy_http_version 1.1;",
                'proxy_set_header Connection "";',
                f"proxy_next_upstream {retry};",
                f"proxy_next_upstream_tries {settings.next_upstream_tries};",
                "proxy_connect_timeout 2s;",
                "proxy_read_timeout 60s;",
            ]),
            *_block(f"location ~ {admin}", ["return 403;"]),
        ]),
        *_block("server", [
            f"listen {LOOPBACK}:{settings.grpc_port} http2;",
            *_block("location /", [
                "grpc_pass grpc://triton_grpc;",
                f"grpc_next_upstream {retry};",
                f"grpc_next_upstream_tries {settings.next_upstream_tries};",
                "grpc_connect_timeout 2s;",
                "grpc_read_timeout 60s;",
            ]),
        ]),
    ]
    lines = [
        "daemon off;",
        "master_process on;",
        f"worker_processes {settings.worker_processes};",
        f"pid {prefix / 'nginx.pid'};",
        f"error_log {prefix / 'error.log'} warn;",
        *_block("events", ["worker_connections 1024;"]),
        *_block("http", http_lines),
    ]
    return "\n".join(lines) + "\n"


def find_nginx() -> Path:
    """The nginx binary (PATH, then /usr/sbin); ScaleoutError says how to install it."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise ScaleoutError("nginx is not installed; run scripts/install_system_deps.sh "
                            "(Debian package nginx-light)")
    return Path(found)


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((LOOPBACK, port)) == 0


class NginxGateway:
    """nginx balancing HTTP and gRPC over `upstreams`, as a context manager.

    `start()` writes the config into a fresh temp directory, checks it with `nginx -t`, starts
    nginx in the foreground and returns once both ports accept connections.
    """

    def __init__(
        self,
        upstreams: Sequence[Upstream],
        *,
        fail_timeout_s: int = 5,
        max_body_mb: int = 64,
        startup_timeout_s: float = 20.0,
    ) -> None:
        self._upstreams = tuple(upstreams)
        self._fail_timeout_s = fail_timeout_s
        self._max_body_mb = max_body_mb
        self._startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._settings: GatewaySettings | None = None
        self._workdir: Path | None = None

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self._require().http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{LOOPBACK}:{self._require().grpc_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _require(self) -> GatewaySettings:
        if self._settings is None or self._proc is None:
            raise ScaleoutError("the gateway is not running; call start() first")
        return self._settings

    def __enter__(self) -> NginxGateway:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._proc is not None:
            raise ScaleoutError("the gateway is already running")
        nginx = find_nginx()
        self._workdir = Path(tempfile.mkdtemp(prefix="scaleout-nginx-"))
        # Workers of a root master run as `nobody`: they must be able to use the temp paths.
        self._workdir.chmod(0o755)
        for name in _TEMP_DIRS:
            (self._workdir / name).mkdir()
            (self._workdir / name).chmod(0o777)
        http_port, grpc_port = pick_free_ports(2)
        self._settings = GatewaySettings(
            http_port=http_port, grpc_port=grpc_port, upstreams=self._upstreams,
            prefix=self._workdir, fail_timeout_s=self._fail_timeout_s,
            max_body_mb=self._max_body_mb,
        )
        config = self._workdir / "nginx.conf"
        config.write_text(render_config(self._settings), encoding="utf-8")
        base = [str(nginx), "-p", str(self._workdir), "-c", str(config)]
        check = subprocess.run([*base, "-t", "-q"], capture_output=True, text=True,
                               timeout=30, check=False)
        if check.returncode != 0:
            raise ScaleoutError(f"nginx rejected the generated config {config}: "
                                f"{check.stderr.strip()}")
        log_file = (self._workdir / "stderr.log").open("wb")
        try:
            self._proc = subprocess.Popen(base, stdout=log_file, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        finally:
            log_file.close()
        deadline = time.monotonic() + self._startup_timeout_s
        while not (_listening(http_port) and _listening(grpc_port)):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                reason = self._error_log_tail()
                self.stop()
                raise ScaleoutError(f"nginx did not start: {reason}")
            time.sleep(0.05)
        log.info("nginx gateway: HTTP %s, gRPC %s over %d replica(s)", self.http_url,
                 self.grpc_url, len(self._upstreams))

    def _error_log_tail(self) -> str:
        if self._workdir is None:
            return "no log"
        texts = []
        for name in ("error.log", "stderr.log"):
            path = self._workdir / name
            if path.is_file():
                texts.append(path.read_text(encoding="utf-8", errors="replace").strip())
        return " | ".join(t for t in texts if t)[-2000:] or "no log output"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Quit nginx (SIGQUIT: graceful), then kill its session if it lingers."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGQUIT)
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout_s)
            except ProcessLookupError:
                pass
        if proc is not None and proc.poll() is not None:
            try:  # workers left behind by a master that died
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._proc = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
