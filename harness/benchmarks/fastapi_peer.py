"""The peer users would build instead of Triton: FastAPI on uvicorn, ONNX Runtime in-process.

It serves the same KServe v2 endpoints a client of the pipeline uses, with the same binary
body Triton takes (JSON header + binary tensors, `Inference-Header-Content-Length`), so one
load generator sends identical bytes to both:

- ``POST /v2/models/{pipeline}/infer``: decode with `tritonkit_client.kserve_codec`, run the
  pipeline, answer with the outputs asked for (binary or JSON, as Triton does);
- ``GET /v2/health/ready`` and ``GET /v2/health/live``.

It runs the same work as the Triton ensemble: the ensemble's wiring and Python step functions
(`tritonkit.processing.steps`) from the built repository, and the same ONNX model on ONNX Runtime
(`harness.benchmarks.inprocess_limit.TunedPipeline`). A bad image answers HTTP 400 with
``{"error": "..."}`` naming the row and the problem, like Triton; a request for another model
answers 404; an unexpected failure 500. The server stays up either way.

Fair configuration (what a careful user would deploy on this machine):

- uvicorn ``--workers`` = the cores this process may use (`available_cores()`), one process
  per core, so Python's GIL does not serialize requests;
- ONNX Runtime: CPU provider, ``intra_op_num_threads = max(1, cores // workers)`` (1 with one
  worker per core: more threads per process would only oversubscribe the cores), inter-op 1,
  sequential execution; OMP/MKL/OpenBLAS thread counts pinned to the same value;
- the pipeline (ONNX session included) is loaded once per worker at startup, and warmed up
  with one request before the worker reports ready;
- no access log (it costs more than the digits model per request); uvicorn picks uvloop and
  httptools when installed (``uvicorn[standard]``), else asyncio and h11;
- handler: the pipeline runs inline in the ``async`` endpoint (`HandlerMode.INLINE`, the
  default). The work is CPU-bound and each worker has one core: handing it to a thread
  (`HandlerMode.EXECUTOR`, ``run_in_executor`` on a one-thread pool, or a sync ``def``
  endpoint, which runs in AnyIO's 40-thread pool) adds a thread hand-off and GIL contention per
  request and buys no parallelism. Measured on digits, 2 workers on 2 cores, 4 client threads,
  server CPU time per request (robust to the noise of a shared machine): inline 0.61-0.74 ms
  vs executor 0.72-0.88 ms at 1 image/request, 1.05-1.11 ms vs 1.30-1.32 ms at 16, i.e. inline
  costs 15-20% less. The executor mode stays available for comparison.

`serve_peer` starts ``python -m uvicorn harness.benchmarks.fastapi_peer:create_app_from_env
--factory``
in its own session (process group) bound to 127.0.0.1, waits until every worker has loaded the
pipeline and ``/v2/health/ready`` answers, and stops it with SIGTERM, a wait, then SIGKILL to the
whole group, so no worker outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request, Response
from PIL import Image
from tritonclient.grpc import model_config_pb2 as mc
from tritonkit_client.kserve_codec import (
    BINARY_CONTENT_TYPE,
    HEADER_LENGTH,
    JSON_CONTENT_TYPE,
    CodecError,
    Datatype,
    InferResponse,
    classification_strings,
    datatype_of,
    decode_request,
    encode_error,
    encode_response,
)

from harness.benchmarks.errors import BenchmarkError
from harness.benchmarks.inprocess_limit import TunedPipeline, available_cores, image_batch
from harness.benchmarks.peer_process import free_port, group_members, live_processes  # noqa: F401
from harness.benchmarks.peer_process import log_tail as _log_tail
from harness.benchmarks.peer_process import probe as _probe
from harness.benchmarks.peer_process import stop_group as _stop
from tritonkit.errors import ToolkitError
from tritonkit.processing import StepInputError

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
APP_FACTORY = "harness.benchmarks.fastapi_peer:create_app_from_env"
MODEL_VERSION = "1"

ENV_REPOSITORY = "BENCH_PEER_REPOSITORY"
ENV_PIPELINE = "BENCH_PEER_PIPELINE"
ENV_ORT_THREADS = "BENCH_PEER_ORT_THREADS"
ENV_HANDLER = "BENCH_PEER_HANDLER"
ENV_READY_DIR = "BENCH_PEER_READY_DIR"
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class PeerError(BenchmarkError):
    """The FastAPI peer could not be configured, started or stopped."""


class HandlerMode(str, Enum):
    INLINE = "inline"  # run the pipeline in the async endpoint itself (one core per worker)
    EXECUTOR = "executor"  # hand it to a one-thread executor with run_in_executor


@dataclass(frozen=True, kw_only=True)
class PeerConfig:
    repository: Path
    pipeline: str
    ort_threads: int = 1
    handler: HandlerMode = HandlerMode.INLINE
    ready_dir: Path | None = None  # each worker touches <ready_dir>/<pid> once loaded

    def to_env(self) -> dict[str, str]:
        env = {ENV_REPOSITORY: str(self.repository), ENV_PIPELINE: self.pipeline,
               ENV_ORT_THREADS: str(self.ort_threads), ENV_HANDLER: self.handler.value}
        if self.ready_dir is not None:
            env[ENV_READY_DIR] = str(self.ready_dir)
        return env

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PeerConfig:
        missing = [k for k in (ENV_REPOSITORY, ENV_PIPELINE) if not env.get(k)]
        if missing:
            raise PeerError(f"the peer needs the environment variable(s) {missing}")
        try:
            threads = int(env.get(ENV_ORT_THREADS, "1"))
            handler = HandlerMode(env.get(ENV_HANDLER, HandlerMode.INLINE.value))
        except ValueError as e:
            raise PeerError(f"bad peer setting: {e}") from e
        ready = env.get(ENV_READY_DIR)
        return cls(repository=Path(env[ENV_REPOSITORY]), pipeline=env[ENV_PIPELINE],
                   ort_threads=threads, handler=handler,
                   ready_dir=Path(ready) if ready else None)


# --------------------------------------------------------------------------- request handling


@dataclass(frozen=True, kw_only=True)
class _TensorRule:
    datatype: Datatype
    dims: tuple[int, ...]  # without the batch axis; -1 is any size


def _datatype_of_config(data_type: int) -> Datatype:
    name = mc.DataType.Name(data_type).removeprefix("TYPE_")
    return Datatype.BYTES if name == "STRING" else Datatype(name)


def _labels(path: Path) -> tuple[str, ...]:
    return tuple(path.read_text(encoding="utf-8").splitlines())


class PeerApp:
    """What one worker serves: the pipeline and the checks Triton makes on each request."""

    def __init__(self, config: PeerConfig) -> None:
        self.config = config
        self.pipeline = TunedPipeline(config.repository, config.pipeline,
                                      intra_op_threads=config.ort_threads)
        ensemble = self.pipeline.reference.config
        self.inputs = {t.name: _TensorRule(datatype=_datatype_of_config(t.data_type),
                                           dims=tuple(int(d) for d in t.dims))
                       for t in ensemble.input}
        self.labels = {t.name: _labels(config.repository / config.pipeline / t.label_filename)
                       for t in ensemble.output if t.label_filename}
        self.executor = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="peer-infer")
                         if config.handler is HandlerMode.EXECUTOR else None)

    def _check_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        name = self.config.pipeline
        if set(inputs) != set(self.inputs):
            raise CodecError(f"model {name!r} expects inputs {sorted(self.inputs)}, the "
                             f"request has {sorted(inputs)}")
        for input_name, array in inputs.items():
            rule = self.inputs[input_name]
            if datatype_of(array) is not rule.datatype:
                raise CodecError(f"input {input_name!r} of model {name!r} is "
                                 f"{rule.datatype.value}, got {datatype_of(array).value}")
            batch, dims = (array.shape[0], array.shape[1:]) if array.ndim else (0, ())
            limit = self.pipeline.max_batch_size
            if len(dims) != len(rule.dims) or any(
                    want not in (-1, got) for want, got in zip(rule.dims, dims, strict=True)):
                raise CodecError(f"input {input_name!r} of model {name!r} has shape "
                                 f"[-1, {', '.join(map(str, rule.dims))}], got "
                                 f"{list(array.shape)}")
            if not 0 < batch <= limit:
                raise CodecError(f"input {input_name!r} of model {name!r}: batch size must "
                                 f"be 1..{limit}, got {batch}")

    def answer(self, model_name: str, body: bytes, header_length: str | None) -> Response:
        """The HTTP answer to one infer request (never raises)."""
        if model_name != self.config.pipeline:
            return _error(404, f"Request for unknown model: '{model_name}' is not found")
        try:
            length = int(header_length) if header_length is not None else None
        except ValueError as e:
            return _error(400, f"bad {HEADER_LENGTH} header {header_length!r}: {e}")
        try:
            request = decode_request(body, length)
            self._check_inputs(request.inputs)
            requested = request.resolve_outputs(self.pipeline.output_names)
            outputs = self.pipeline(request.inputs)
            for wanted in requested:  # top-k as Triton's classification extension answers
                if wanted.class_count:
                    outputs[wanted.name] = classification_strings(
                        outputs[wanted.name], wanted.class_count,
                        self.labels.get(wanted.name, ()))
            encoded, json_length = encode_response(
                InferResponse(model_name=model_name, model_version=MODEL_VERSION,
                              request_id=request.request_id, outputs=outputs), requested)
        except (CodecError, StepInputError) as e:
            return _error(400, f"in model {model_name!r}: {e}")
        except ToolkitError as e:  # ReferenceRunError: rows a step rejected (bad images)
            return _error(400, f"in ensemble {model_name!r}: {e}")
        except Exception as e:  # any other failure answers 500 and the worker stays up
            log.exception("%s: inference failed", model_name)
            return _error(500, f"in ensemble {model_name!r}: {type(e).__name__}: {e}")
        if json_length is None:
            return Response(content=encoded, media_type=JSON_CONTENT_TYPE)
        return Response(content=encoded, media_type=BINARY_CONTENT_TYPE,
                        headers={HEADER_LENGTH: str(json_length)})

    def warm_up(self) -> None:
        """One request through the whole pipeline, so the first client request is not slower."""
        if list(self.inputs.values()) != [_TensorRule(datatype=Datatype.BYTES, dims=(1,))]:
            log.info("%s: not an image pipeline; no warm-up", self.config.pipeline)
            return
        gradient = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
        buffer = io.BytesIO()
        Image.fromarray(np.dstack([gradient] * 3), mode="RGB").save(buffer, format="PNG")
        name = next(iter(self.inputs))
        try:
            self.pipeline({name: image_batch([buffer.getvalue()])})
        except ToolkitError as e:
            log.warning("%s: warm-up request failed: %s", self.config.pipeline, e)


def _error(status: int, message: str) -> Response:
    return Response(content=encode_error(message), status_code=status,
                    media_type=JSON_CONTENT_TYPE)


def create_app(config: PeerConfig) -> FastAPI:
    """The FastAPI app of one worker; loads and warms up the pipeline before returning."""
    peer = PeerApp(config)
    peer.warm_up()
    app = FastAPI(title=f"FastAPI peer: {config.pipeline}", docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return Response(status_code=200)

    @app.get("/v2/health/live")
    async def live() -> Response:
        return Response(status_code=200)

    @app.post("/v2/models/{model_name}/infer")
    async def infer(model_name: str, request: Request) -> Response:
        body = await request.body()
        header_length = request.headers.get(HEADER_LENGTH)
        if peer.executor is None:
            return peer.answer(model_name, body, header_length)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(peer.executor, peer.answer, model_name, body,
                                          header_length)

    if config.ready_dir is not None:
        (config.ready_dir / str(os.getpid())).touch()
    log.info("%s: worker %d ready (ort_threads=%d, handler=%s)", config.pipeline,
             os.getpid(), config.ort_threads, config.handler.value)
    return app


def create_app_from_env() -> FastAPI:
    """uvicorn's factory (``--factory``): the configuration comes from BENCH_PEER_* variables."""
    return create_app(PeerConfig.from_env(os.environ))


# --------------------------------------------------------------------------- the server process


@dataclass(frozen=True, kw_only=True)
class PeerServer:
    """A running peer: where it listens and which processes are its own."""

    pipeline: str
    port: int
    pid: int  # the uvicorn main process, leader of its own process group
    worker_pids: tuple[int, ...]
    workers: int
    ort_threads: int
    handler: HandlerMode
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def infer_url(self) -> str:
        return f"{self.url}/v2/models/{self.pipeline}/infer"

    @property
    def ready_url(self) -> str:
        return f"{self.url}/v2/health/ready"


def fair_ort_threads(workers: int) -> int:
    """ONNX Runtime intra-op threads per worker: the cores split evenly, at least 1."""
    return max(1, available_cores() // workers)


@contextlib.contextmanager
def serve_peer(
    repository: Path, pipeline: str, *,
    port: int | None = None,
    workers: int | None = None,
    ort_threads: int | None = None,
    handler: HandlerMode = HandlerMode.INLINE,
    startup_timeout_s: float = 120.0,
    stop_grace_s: float = 10.0,
    log_path: Path | None = None,
) -> Iterator[PeerServer]:
    """Run the peer for `pipeline` of a built repository on 127.0.0.1 until the block exits.

    Defaults are the fair configuration: one worker per available core, ONNX Runtime threads
    = cores // workers, a free port. Raises PeerError when it does not get ready within
    `startup_timeout_s` (with the tail of its log).
    """
    workers = workers or available_cores()
    threads = ort_threads or fair_ort_threads(workers)
    if workers < 1 or threads < 1:
        raise PeerError(f"workers and ort_threads must be >= 1, got {workers}, {threads}")
    if not (repository / pipeline / "config.pbtxt").is_file():
        raise PeerError(f"{repository} holds no model {pipeline!r}")
    port = port or free_port()
    scratch = Path(tempfile.mkdtemp(prefix="fastapi-peer-"))
    ready_dir = scratch / "ready"
    ready_dir.mkdir()
    log_file = log_path or scratch / "uvicorn.log"
    config = PeerConfig(repository=repository.resolve(), pipeline=pipeline,
                        ort_threads=threads, handler=handler, ready_dir=ready_dir)
    env = {**os.environ, **config.to_env(), **dict.fromkeys(_THREAD_ENV, str(threads))}
    command = [sys.executable, "-m", "uvicorn", APP_FACTORY, "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
               "--no-access-log", "--log-level", "warning",
               "--timeout-graceful-shutdown", str(int(stop_grace_s))]
    log.info("starting the FastAPI peer: %s", " ".join(command))
    with log_file.open("wb") as sink:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=sink,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if process.poll() is not None:
                raise PeerError(f"the peer exited with code {process.returncode} while "
                                f"starting; log {log_file}:\n{_log_tail(log_file)}")
            loaded = sorted(int(p.name) for p in ready_dir.iterdir())
            if len(loaded) >= workers and _probe(f"http://127.0.0.1:{port}/v2/health/ready"):
                break
            if time.monotonic() > deadline:
                raise PeerError(f"the peer was not ready within {startup_timeout_s} s "
                                f"({len(loaded)}/{workers} workers loaded); log {log_file}:\n"
                                f"{_log_tail(log_file)}")
            time.sleep(0.1)
        server = PeerServer(pipeline=pipeline, port=port, pid=process.pid,
                            worker_pids=tuple(loaded), workers=workers, ort_threads=threads,
                            handler=handler, log_path=log_file)
        log.info("FastAPI peer ready at %s (%d workers, ort_threads=%d)", server.url, workers,
                 threads)
        yield server
    finally:
        _stop(process, grace_s=stop_grace_s)
        if log_path is None:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            shutil.rmtree(ready_dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                scratch.rmdir()
