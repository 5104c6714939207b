"""Scale-out on one machine: N local Triton replicas behind a real nginx, plus client-side
failover, with one replica killed under steady load.

`run_scaleout(settings)`:
1. builds the example spec for the local target and keeps only one pipeline (the digits
   ensemble and its steps) in a temp repository;
2. starts `replicas` tritonservers on loopback with the serving container's flags
   (docker/triton-server.flags: restricted admin APIs, fixed repository, strict readiness);
3. puts nginx in front of them (HTTP `proxy_pass` and gRPC `grpc_pass`,
`harness.scaleout.nginx_gateway`);
4. runs closed-loop load from worker threads: through nginx over HTTP and over gRPC, and
   directly to the replicas with `tritonkit_client.FailoverClient`;
5. after `phase_s` seconds SIGKILLs one replica (a crash, not a graceful stop), and measures
   the throughput before, in the `phase_s` seconds after the kill, and in the `phase_s`
   seconds after that. Every request counts; a request fails only when its client gives up.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

import numpy as np
from tritonkit_client import ClientError, connect
from tritonkit_client.failover import FailoverClient, FailoverPolicy
from tritonkit_client.options import ClientOptions, parse_url

from harness.scaleout.errors import ScaleoutError
from harness.scaleout.nginx_gateway import NginxGateway, Upstream
from harness.scaleout.server_flags import FLAGS_FILE, read_server_flags
from tritonkit.build import build_repository
from tritonkit.server import LocalTriton
from tritonkit.spec import BuildSpec, Target, load_spec

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Triton metrics the Grafana dashboard and the HPA rule read (checked on a live replica).
DASHBOARD_METRICS: tuple[str, ...] = (
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
)


class LoadPath(str, Enum):
    """How a worker reaches the replicas."""

    NGINX_HTTP = "nginx_http"
    NGINX_GRPC = "nginx_grpc"
    FAILOVER_GRPC = "failover_grpc"
    FAILOVER_HTTP = "failover_http"


@dataclass(frozen=True, kw_only=True)
class ScaleoutSettings:
    spec: Path = PROJECT_ROOT / "models.yaml"
    pipeline: str = "digits"
    replicas: int = 3
    workers: tuple[LoadPath, ...] = (
        LoadPath.NGINX_HTTP, LoadPath.NGINX_GRPC, LoadPath.FAILOVER_GRPC, LoadPath.FAILOVER_HTTP,
    )
    images_per_request: int = 4
    phase_s: float = 8.0
    warmup_s: float = 2.0
    kill_replica: int = 0
    startup_timeout_s: float = 240.0
    request_timeout_s: float = 30.0
    recovery_ratio: float = 0.6  # `recovered` when after >= ratio x before


@dataclass(frozen=True, kw_only=True)
class PathResult:
    requests: int
    failed_requests: int
    failovers: int


@dataclass(frozen=True, kw_only=True)
class ScaleoutSummary:
    replicas: int
    requests: int
    failed_requests: int
    throughput_before: float  # requests/s
    throughput_during: float
    throughput_after: float
    images_per_request: int
    phase_s: float
    killed_replica: str
    recovered: bool
    by_path: dict[str, PathResult]
    errors: tuple[str, ...]
    restricted_api_status: int  # HTTP status of an admin call without the admin header
    metrics_found: tuple[str, ...]
    started_at: str
    seconds: float
    server_flags: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


# -- repository ------------------------------------------------------------------------------


def pipeline_spec(spec: BuildSpec, pipeline: str) -> BuildSpec:
    """`spec` reduced to the pipeline called `pipeline` and the models and steps it runs."""
    chosen = next((p for p in spec.pipelines if p.name == pipeline), None)
    if chosen is None:
        raise ScaleoutError(f"{spec.source}: no pipeline {pipeline!r}; pipelines: "
                            f"{', '.join(p.name for p in spec.pipelines)}")
    names = {step.model for step in chosen.steps}
    return dataclasses.replace(
        spec,
        models=tuple(m for m in spec.models if m.name in names),
        python_steps=tuple(s for s in spec.python_steps if s.name in names),
        pipelines=(chosen,),
    )


def build_pipeline_repository(spec_path: Path, pipeline: str, out: Path) -> Path:
    """The spec built for the local target, reduced to `pipeline` and its steps, in `out`."""
    spec = pipeline_spec(load_spec(spec_path), pipeline)
    build_repository(spec, target=Target.LOCAL, out=out, remember=False)
    return out


def sample_images(count: int) -> np.ndarray:
    """`count` PNG digits of the test split as a BYTES tensor [count, 1]."""
    from examples.model_zoo.digits import encoded_split  # noqa: PLC0415  (pulls in sklearn)

    blobs, _ = encoded_split("test")
    tensor = np.empty((count, 1), dtype=np.object_)
    for row in range(count):
        tensor[row, 0] = bytes(blobs[row % len(blobs)])
    return tensor


# -- load ------------------------------------------------------------------------------------


_Call = Callable[[], object]
_Factory = Callable[[ExitStack], tuple[_Call, Callable[[], int] | None]]


@dataclass
class _WorkerLog:
    """Written by one worker thread only; read after it stopped."""

    path: LoadPath
    done: list[float] = field(default_factory=list)  # completion times of successes
    failed: int = 0
    failovers: int = 0
    errors: list[str] = field(default_factory=list)
    setup_error: str = ""
    ready: threading.Event = field(default_factory=threading.Event)

    def fail(self, error: BaseException) -> None:
        self.failed += 1
        if len(self.errors) < 5:
            self.errors.append(f"{self.path.value}: {type(error).__name__}: {error}")


def _worker(factory: _Factory, record: _WorkerLog, stop: threading.Event) -> None:
    """Closed-loop load from one thread. The client is made in this thread: tritonclient's
    HTTP client (gevent) cannot be used from a thread other than the one that made it."""
    with ExitStack() as stack:
        try:
            call, failovers = factory(stack)
            call()  # connects and checks the outputs before the measurement starts
        except ClientError as e:
            record.setup_error = f"{record.path.value}: {e}"
            return
        finally:
            record.ready.set()
        while not stop.is_set():
            try:
                call()
            except Exception as e:  # a ClientError, or anything else that escapes: a failure
                record.fail(e)
            else:
                record.done.append(time.monotonic())
        if failovers is not None:
            record.failovers = failovers()


def _rate(times: Sequence[float], start: float, end: float) -> float:
    count = sum(1 for t in times if start <= t < end)
    return count / (end - start) if end > start else 0.0


def _admin_status(http_hostport: str) -> int:
    """Status of a model-repository call without the admin header (403 when restricted)."""
    request = urllib.request.Request(f"http://{http_hostport}/v2/repository/index",
                                     data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, OSError) as e:
        raise ScaleoutError(f"cannot reach {http_hostport}: {e}") from e


def _metrics_found(metrics_url: str) -> tuple[str, ...]:
    try:
        with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=10) as response:
            text = response.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError) as e:
        raise ScaleoutError(f"cannot read metrics from {metrics_url}: {e}") from e
    return tuple(m for m in DASHBOARD_METRICS if f"\n{m}{{" in f"\n{text}")


def _make_call(path: LoadPath, stack: ExitStack, *, gateway: NginxGateway,
               servers: Sequence[LocalTriton], inputs: dict[str, np.ndarray],
               settings: ScaleoutSettings) -> tuple[_Call, Callable[[], int] | None]:
    outputs = ["PROBABILITIES"]
    model = settings.pipeline
    if path in (LoadPath.NGINX_HTTP, LoadPath.NGINX_GRPC):
        url = gateway.http_url if path is LoadPath.NGINX_HTTP else gateway.grpc_url
        client = stack.enter_context(connect(url, timeout_s=settings.request_timeout_s,
                                             retries=3, backoff_s=0.05))
        return (lambda: client.infer(model, inputs, outputs=outputs)), None
    if path is LoadPath.FAILOVER_GRPC:
        urls = [s.urls.grpc for s in servers]
    else:
        urls = [s.urls.http for s in servers]
    failover = stack.enter_context(FailoverClient(
        [parse_url(u) for u in urls],
        options=ClientOptions(timeout_s=settings.request_timeout_s),
        policy=FailoverPolicy(rounds=3, ejection_s=settings.phase_s, backoff_s=0.05),
    ))
    return (lambda: failover.infer(model, inputs, outputs=outputs)), (
        lambda: failover.stats().failovers)


def run_scaleout(settings: ScaleoutSettings, *, admin_key: str | None = None) -> ScaleoutSummary:
    """Run the experiment described in the module docstring; always stops what it started."""
    if settings.replicas < 2:
        raise ScaleoutError("scale-out needs at least 2 replicas (one is killed)")
    if not 0 <= settings.kill_replica < settings.replicas:
        raise ScaleoutError(f"kill_replica must be within [0, {settings.replicas})")
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    began = time.monotonic()
    key = admin_key or os.urandom(16).hex()
    flags = read_server_flags(FLAGS_FILE, admin_key=key)
    shown_flags = read_server_flags(FLAGS_FILE, admin_key="REDACTED")
    work = Path(tempfile.mkdtemp(prefix="scaleout-"))
    try:
        repository = build_pipeline_repository(settings.spec, settings.pipeline,
                                               work / "model_repository")
        inputs = {"IMAGE": sample_images(settings.images_per_request)}
        with ExitStack() as stack:
            servers = [
                LocalTriton(repository, extra_args=flags, log_path=work / f"triton-{i}.log",
                            startup_timeout_s=settings.startup_timeout_s)
                for i in range(settings.replicas)
            ]
            for server in servers:
                stack.callback(server.stop)
            # LocalTriton ties the server's life to the starting thread; start from this one.
            for server in servers:
                server.start()
            log.info("%d replicas ready", len(servers))
            admin_status = _admin_status(servers[0].urls.http_hostport)
            gateway = stack.enter_context(NginxGateway(
                [Upstream(http=s.urls.http_hostport, grpc=s.urls.grpc_hostport)
                 for s in servers]))
            stop = threading.Event()
            records: list[_WorkerLog] = []
            workers: list[threading.Thread] = []
            for path in settings.workers:
                record = _WorkerLog(path=path)
                records.append(record)
                factory = functools.partial(_make_call, path, gateway=gateway, servers=servers,
                                            inputs=inputs, settings=settings)
                workers.append(threading.Thread(target=_worker, name=f"load-{path.value}",
                                                args=(factory, record, stop)))
            for worker in workers:
                worker.start()
            for record in records:
                record.ready.wait(timeout=settings.request_timeout_s * 4)
            broken = [r.setup_error or f"{r.path.value}: not ready" for r in records
                      if r.setup_error or not r.ready.is_set()]
            if broken:
                stop.set()
                raise ScaleoutError(f"load workers could not start: {broken}")
            try:
                time.sleep(settings.warmup_s)
                t_before = time.monotonic()
                time.sleep(settings.phase_s)
                victim = servers[settings.kill_replica]
                killed = f"replica {settings.kill_replica} ({victim.urls.http})"
                t_kill = time.monotonic()
                if victim.pid is not None:
                    os.kill(victim.pid, signal.SIGKILL)
                log.info("killed %s", killed)
                time.sleep(settings.phase_s)
                t_after = time.monotonic()
                time.sleep(settings.phase_s)
                t_end = time.monotonic()
            finally:
                stop.set()
                for worker in workers:
                    worker.join(timeout=settings.request_timeout_s * 4)
            metrics = _metrics_found(servers[(settings.kill_replica + 1) % len(servers)]
                                     .urls.metrics)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    done = sorted(t for r in records for t in r.done)
    before = _rate(done, t_before, t_kill)
    after = _rate(done, t_after, t_end)
    by_path: dict[str, PathResult] = {}
    for record in records:
        previous = by_path.get(record.path.value)
        by_path[record.path.value] = PathResult(
            requests=len(record.done) + record.failed + (previous.requests if previous else 0),
            failed_requests=record.failed + (previous.failed_requests if previous else 0),
            failovers=record.failovers + (previous.failovers if previous else 0),
        )
    failed = sum(r.failed for r in records)
    return ScaleoutSummary(
        replicas=settings.replicas,
        requests=len(done) + failed,
        failed_requests=failed,
        throughput_before=round(before, 2),
        throughput_during=round(_rate(done, t_kill, t_after), 2),
        throughput_after=round(after, 2),
        images_per_request=settings.images_per_request,
        phase_s=settings.phase_s,
        killed_replica=killed,
        recovered=after >= settings.recovery_ratio * before,
        by_path=by_path,
        errors=tuple(e for r in records for e in r.errors)[:10],
        restricted_api_status=admin_status,
        metrics_found=metrics,
        started_at=started_at,
        seconds=round(time.monotonic() - began, 1),
        server_flags=shown_flags,
    )


def write_summary(summary: ScaleoutSummary, out: Path) -> Path:
    """`out/<timestamp>/summary.json`, copied to `out/latest/summary.json`; returns the latter."""
    stamp = summary.started_at.replace(":", "").replace("+0000", "Z")
    run_dir = Path(out) / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(summary.to_json(), encoding="utf-8")
    latest = Path(out) / "latest"
    latest.mkdir(parents=True, exist_ok=True)
    target = latest / "summary.json"
    target.write_text(summary.to_json(), encoding="utf-8")
    return target


