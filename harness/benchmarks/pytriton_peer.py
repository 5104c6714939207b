"""The peer users build with PyTriton: a real Triton (PyTriton's bundled tritonserver, the
binary our LocalTriton runs) with the pipeline bound as one Python inference callable.

Each pipeline of a built repository (``digits`` for light, ``resnet`` for heavy) is bound under
its own name with the ensemble's inputs, outputs and max_batch_size, so ``POST
/v2/models/{pipeline}/infer`` takes the byte-identical KServe v2 bodies hey sends to our Triton
and the FastAPI peer. The callable runs the same work: the ensemble's wiring and Python step
functions and the same ONNX model on ONNX Runtime (`inprocess_limit.TunedPipeline`, loaded
and warmed up as the FastAPI peer does, through `fastapi_peer.PeerApp`).

Fair configuration on this 2-core machine (what a careful user deploys):

- ``@batch`` behind Triton's dynamic batcher, set as our repository sets the pipeline's ONNX
  model (digits: preferred 16/64, 200 us; resnet: 8/16/32, 2 ms);
- 2 instances (one per core: PyTriton binds a list of callables, each served by its own
  thread with its own pipeline; ONNX Runtime and PIL release the GIL) x 1 ONNX Runtime thread,
  as our Triton's 2 x 1 and the FastAPI peer's 2 workers x 1. Measured at concurrency 8, CPU
  time of all its processes per request: 1.9-2.4 ms (digits) and 38 ms (resnet), against
  2.8-3.3 ms and 55 ms with 1 instance x 2 threads; throughput with no batcher delay or 1 x 2
  stayed within this shared machine's noise;
- one process serves both pipelines (as our Triton does); Triton's defaults otherwise, no
  metrics port, verbose logging off.

What PyTriton imposes (measured as it is):

- classification: Triton applies ``class_count`` to the FP32 output in C++, but PyTriton's
  config cannot attach a label file (its `Tensor` has no label_filename), so entries read
  ``"score:index"`` where our Triton and the FastAPI peer answer ``"score:index:label"``;
- errors: a bad image answers HTTP 500 (our Triton: 400) whose message ends with the step's
  (``in ensemble 'digits': row 0: PNG header is truncated or corrupt``) after a traceback; the
  server stays up. One call serves a whole dynamic batch, so a bad image also fails the
  requests batched with it;
- each request crosses two more process boundaries than in our Triton's Python steps
  (tritonserver -> PyTriton's proxy stub -> this process over ZeroMQ and shared memory).

`serve_pytriton` starts ``python -m harness.benchmarks.pytriton_peer --repository R
--pipelines digits resnet --http-port P --grpc-port G`` in its own process group on 127.0.0.1,
with LocalTriton's environment for the same binary (`tritonkit.server.server_environment`: the
interpreter's libpython on LD_LIBRARY_PATH, else the stub embeds the system's libpython3.11 and
PyTriton's proxy fails), and waits until every pipeline is bound and ``/v2/health/ready`` and
each ``/v2/models/{pipeline}/ready`` answer 200 (~9 s). It starts again (3 attempts) when a
picked port was taken or when PyTriton 0.7's handshake between the stubs of a model's
instances races (about one start in eight here; the model then fails to load). To stop (~3 s)
it sends SIGTERM to the Python process alone (PyTriton stops tritonserver, 1-s exit timeout,
and cleans up; signalling the stubs too leaks their /dev/shm regions), waits, SIGTERMs and
SIGKILLs what is left of the group, and removes any shared memory a killed process left.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from pytriton.decorators import batch
from pytriton.exceptions import PyTritonBadParameterError
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import triton_to_np_dtype

from harness.benchmarks.errors import BenchmarkError
from harness.benchmarks.fastapi_peer import PeerApp, PeerConfig
from harness.benchmarks.inprocess_limit import available_cores
from harness.benchmarks.peer_process import (
    free_port,
    group_members,
    log_tail,
    probe,
    stop_group,
)
from tritonkit.errors import ToolkitError
from tritonkit.processing import StepInputError
from tritonkit.repository import read_config
from tritonkit.runtime import parameters as parameter_names
from tritonkit.server import find_tritonserver, server_environment

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODULE = "harness.benchmarks.pytriton_peer"
MODEL_VERSION = 1
MARKER_ENV = "BENCH_PYTRITON_PEER_ID"  # in the environment of every process of one peer
EXIT_TIMEOUT_S = 1  # tritonserver's --exit-timeout-secs (why: the module docstring)
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
TRITON_TMP = "/tmp"  # where tritonserver makes the model directories of models loaded by API
SHM_DIR = "/dev/shm"
SHM_PREFIX = "pytrtion"  # PyTriton's Python-backend regions: pytrtion<its pid>-<random>
_LEFTOVER_GRACE_S = 1.0  # for what is left of the group once the Python process exited
_ATTEMPTS = 3  # starts, when a port is taken or PyTriton's handshake fails (`retry_reason`)


class PyTritonPeerError(BenchmarkError):
    """The PyTriton peer could not be configured, started or stopped."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, kw_only=True)
class TensorSpec:
    """One input or output of a bound pipeline (without the batch axis)."""

    name: str
    dtype: type  # what PyTriton's Tensor takes: np.bytes_ for BYTES
    dims: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class Binding:
    """How one pipeline is bound: the ensemble's signature and the batcher of its ONNX model."""

    pipeline: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_us: int


def numpy_dtype(data_type: int) -> type:
    """The numpy type PyTriton binds for a model-config data type (BYTES: np.bytes_)."""
    name = mc.DataType.Name(data_type).removeprefix("TYPE_")
    if name == "STRING":
        return np.bytes_
    dtype = triton_to_np_dtype(name)
    if dtype is None:
        raise PyTritonPeerError(f"no numpy type for the data type {name}")
    return np.dtype(dtype).type


def _specs(tensors: Sequence[Any]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(name=t.name, dtype=numpy_dtype(t.data_type),
                            dims=tuple(int(d) for d in t.dims)) for t in tensors)


def pipeline_binding(repository: Path, pipeline: str) -> Binding:
    """The binding of `pipeline` (an ensemble of the built `repository`).

    Signature and max_batch_size are the ensemble's; the dynamic batcher takes the preferred
    batch sizes and the queue delay of the ensemble's ONNX step (the first one with a dynamic
    batcher), i.e. what the repository ships for its model.
    """
    path = repository / pipeline / "config.pbtxt"
    if not path.is_file():
        raise PyTritonPeerError(f"{repository} holds no model {pipeline!r}")
    ensemble = read_config(path)
    if not ensemble.HasField("ensemble_scheduling"):
        raise PyTritonPeerError(f"{pipeline!r} in {repository} is not an ensemble")
    preferred: tuple[int, ...] = ()
    delay = 0
    for step in ensemble.ensemble_scheduling.step:
        config = read_config(repository / step.model_name / "config.pbtxt")
        if parameter_names.FUNCTION in config.parameters:
            continue  # a Python step
        if config.HasField("dynamic_batching"):
            preferred = tuple(int(s) for s in config.dynamic_batching.preferred_batch_size)
            delay = int(config.dynamic_batching.max_queue_delay_microseconds)
            break
    limit = int(ensemble.max_batch_size)
    if limit < 1:
        raise PyTritonPeerError(f"{pipeline!r} does not batch (max_batch_size {limit}); the "
                                "peer binds batching callables")
    return Binding(pipeline=pipeline, inputs=_specs(ensemble.input),
                   outputs=_specs(ensemble.output), max_batch_size=limit,
                   preferred_batch_sizes=tuple(s for s in preferred if s <= limit),
                   max_queue_delay_us=delay)


def fair_instances() -> int:
    """Model instances per pipeline: one per available core."""
    return available_cores()


def fair_ort_threads(instances: int) -> int:
    """ONNX Runtime intra-op threads per instance: the cores split evenly, at least 1."""
    return max(1, available_cores() // instances)


def peer_command(repository: Path, pipelines: Sequence[str], *, http_port: int,
                 grpc_port: int, instances: int, ort_threads: int,
                 workspace: Path | None = None, ready_file: Path | None = None) -> list[str]:
    """The child's command line (``python -m harness.benchmarks.pytriton_peer ...``)."""
    command = [sys.executable, "-m", MODULE, "--repository", str(repository),
               "--pipelines", *pipelines, "--http-port", str(http_port),
               "--grpc-port", str(grpc_port), "--instances", str(instances),
               "--ort-threads", str(ort_threads)]
    if workspace is not None:
        command += ["--workspace", str(workspace)]
    if ready_file is not None:
        command += ["--ready-file", str(ready_file)]
    return command


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description="Serve pipelines of a built repository with PyTriton (benchmark peer).")
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--pipelines", nargs="+", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--instances", type=int, default=None,
                        help="model instances per pipeline (default: one per core)")
    parser.add_argument("--ort-threads", type=int, default=None,
                        help="ONNX Runtime intra-op threads per instance (default: cores / "
                             "instances)")
    parser.add_argument("--workspace", type=Path, default=None,
                        help="PyTriton's workspace (must not exist; default: PyTriton's own)")
    parser.add_argument("--ready-file", type=Path, default=None,
                        help="touched once every pipeline is bound and loaded")
    args = parser.parse_args(argv)
    if len(set(args.pipelines)) != len(args.pipelines):
        parser.error(f"--pipelines repeats a name: {args.pipelines}")
    for flag in ("instances", "ort_threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    return args


# --------------------------------------------------------------------------- the child process


class PipelineCallable:
    """One model instance: its own pipeline (ONNX session included), called by PyTriton's
    ``@batch`` with the merged inputs of the requests of one dynamic batch."""

    def __init__(self, repository: Path, pipeline: str, *, ort_threads: int) -> None:
        app = PeerApp(PeerConfig(repository=repository, pipeline=pipeline,
                                 ort_threads=ort_threads))
        app.warm_up()  # one request through the whole pipeline, as the FastAPI peer does
        self.name = pipeline
        self.pipeline = app.pipeline

    @batch
    def infer(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        try:
            return self.pipeline(inputs)
        except (StepInputError, ToolkitError) as e:  # rows a step rejected (bad images)
            raise PyTritonBadParameterError(f"in ensemble {self.name!r}: {e}") from None


_stop_requested = threading.Event()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _stop_requested.set()
    raise KeyboardInterrupt(f"signal {signum}")


def serve(args: argparse.Namespace) -> int:
    """Bind every pipeline, start Triton, touch the ready file, serve until SIGTERM/SIGINT."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    instances = args.instances or fair_instances()
    threads = args.ort_threads or fair_ort_threads(instances)
    repository = args.repository.resolve()
    bindings = [pipeline_binding(repository, p) for p in args.pipelines]
    config = TritonConfig(http_address="127.0.0.1", http_port=args.http_port,
                          grpc_address="127.0.0.1", grpc_port=args.grpc_port,
                          allow_metrics=False, log_verbose=0, exit_on_error=True,
                          strict_readiness=True, exit_timeout_secs=EXIT_TIMEOUT_S)
    triton = Triton(config=config, workspace=args.workspace)
    try:
        for binding in bindings:
            callables = [PipelineCallable(repository, binding.pipeline, ort_threads=threads)
                         for _ in range(instances)]
            triton.bind(
                model_name=binding.pipeline,
                infer_func=[c.infer for c in callables],
                inputs=[Tensor(name=t.name, dtype=t.dtype, shape=t.dims)
                        for t in binding.inputs],
                outputs=[Tensor(name=t.name, dtype=t.dtype, shape=t.dims)
                         for t in binding.outputs],
                model_version=MODEL_VERSION,
                config=ModelConfig(
                    batching=True, max_batch_size=binding.max_batch_size,
                    batcher=DynamicBatcher(
                        max_queue_delay_microseconds=binding.max_queue_delay_us,
                        preferred_batch_size=list(binding.preferred_batch_sizes) or None)),
                strict=False)
            log.info("%s: bound with %d instance(s), ort_threads=%d, max_batch_size=%d, "
                     "preferred %s, delay %d us", binding.pipeline, instances, threads,
                     binding.max_batch_size, list(binding.preferred_batch_sizes),
                     binding.max_queue_delay_us)
        triton.run()  # starts tritonserver, loads every model, waits until they are ready
        if args.ready_file is not None:
            args.ready_file.touch()
        log.info("PyTriton peer ready: HTTP 127.0.0.1:%d, gRPC 127.0.0.1:%d, models %s",
                 args.http_port, args.grpc_port, list(args.pipelines))
        triton.serve()  # returns when tritonserver exits or on SIGTERM/SIGINT (it stops then)
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            triton.stop()
    if _stop_requested.is_set():
        return 0
    log.error("tritonserver stopped on its own")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                                                   "%(message)s")
    logging.getLogger("pytriton").setLevel(logging.WARNING)
    args = parse_args(argv)
    try:
        return serve(args)
    except KeyboardInterrupt:
        return 0
    except (BenchmarkError, ToolkitError, OSError) as e:
        log.error("%s", e)
        return 1


# --------------------------------------------------------------------------- the server process


@dataclass(frozen=True, kw_only=True)
class PyTritonServer:
    """A running PyTriton peer: where it listens and which processes are its own."""

    pipelines: tuple[str, ...]
    http_port: int
    grpc_port: int
    pid: int  # the Python process, leader of its own process group
    marker: str  # MARKER_ENV's value in the environment of each of its processes
    instances: int
    ort_threads: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def http_hostport(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def ready_url(self) -> str:
        return f"{self.url}/v2/health/ready"

    def infer_url(self, pipeline: str) -> str:
        return f"{self.url}/v2/models/{pipeline}/infer"


def port_taken(log_text: str) -> bool:
    """Whether tritonserver's log says a service could not start because its port was taken."""
    return any("failed to start" in line.lower() and "already in use" in line.lower()
               for line in log_text.splitlines())


def handshake_race(log_text: str) -> bool:
    """Whether a model failed to load because PyTriton's handshake between the stubs of its
    instances failed: the second stub connects to the first one's handshake socket as soon
    as the file exists, with a 1-s timeout, which on a loaded machine can come before the
    first stub listens ("Connection refused") or after the timeout. Starting again helps."""
    return any("failed to load" in line and "get_config_from_handshake_server" in line
               for line in log_text.splitlines())


def retry_reason(log_text: str) -> str | None:
    """Why a failed start is worth another attempt (a port taken, the handshake race)."""
    if port_taken(log_text):
        return "a port was taken before tritonserver bound it"
    if handshake_race(log_text):
        return "PyTriton's handshake between model instances failed"
    return None


def marked_processes(marker: str) -> list[int]:
    """Live processes whose environment holds ``MARKER_ENV=marker`` (from /proc)."""
    entry = f"{MARKER_ENV}={marker}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text(encoding="utf-8").rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X") and entry in environ.split(b"\0"):
            found.append(int(proc.name))
    return sorted(found)


def _environment(marker: str, threads: int) -> dict[str, str]:
    """What our LocalTriton gives the same tritonserver (libpython and the wheel's libraries
    on LD_LIBRARY_PATH, the environment's bin/ on PATH), plus thread pins and the marker."""
    overrides = {MARKER_ENV: marker, **dict.fromkeys(_THREAD_ENV, str(threads))}
    try:
        return server_environment(find_tritonserver(), marker, overrides)
    except ToolkitError as e:
        raise PyTritonPeerError(f"no tritonserver for PyTriton: {e}") from e


def _log_since(path: Path, offset: int, lines: int = 40) -> str:
    """The last `lines` lines written to `path` after byte `offset`."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _ready(ready_file: Path, port: int, pipelines: Sequence[str]) -> bool:
    if not ready_file.exists():
        return False
    url = f"http://127.0.0.1:{port}/v2"
    return probe(f"{url}/health/ready") and all(
        probe(f"{url}/models/{p}/ready") for p in pipelines)


class _Retry(Exception):
    """The start failed for a reason another attempt can avoid (`retry_reason`)."""


def _wait_ready(process: subprocess.Popen[bytes], ready_file: Path, port: int,
                pipelines: Sequence[str], *, log_file: Path, log_offset: int,
                timeout_s: float, retry_ports: bool, retry_start: bool) -> None:
    deadline = time.monotonic() + timeout_s
    while not _ready(ready_file, port, pipelines):
        code = process.poll()
        written = _log_since(log_file, log_offset)
        reason = retry_reason(written)
        if reason is not None and (retry_ports if port_taken(written) else retry_start):
            raise _Retry(reason)
        if code is not None:
            raise PyTritonPeerError(f"the PyTriton peer exited with code {code} while "
                                    f"starting; log {log_file}:\n{written}")
        if time.monotonic() > deadline:
            raise PyTritonPeerError(f"the PyTriton peer was not ready within {timeout_s} s; "
                                    f"log {log_file}:\n{written}")
        time.sleep(0.1)


@contextlib.contextmanager
def serve_pytriton(
    repository: Path, pipelines: Sequence[str], *,
    http_port: int | None = None,
    grpc_port: int | None = None,
    instances: int | None = None,
    ort_threads: int | None = None,
    startup_timeout_s: float = 180.0,
    stop_grace_s: float = 10.0,
    log_path: Path | None = None,
) -> Iterator[PyTritonServer]:
    """Run the PyTriton peer for `pipelines` of a built repository on 127.0.0.1 until the
    block exits.

    Defaults are the fair configuration: one instance per available core, ONNX Runtime
    threads = cores // instances, free ports (picked again when another process takes one
    first). A start that fails for a reason another attempt avoids (`retry_reason`) is made
    again, 3 attempts in all. Raises PyTritonPeerError when it does not get ready within
    `startup_timeout_s` (with the tail of its log).
    """
    pipelines = tuple(pipelines)
    if not pipelines or len(set(pipelines)) != len(pipelines):
        raise PyTritonPeerError(f"give one or more distinct pipelines, got {list(pipelines)}")
    instances = instances or fair_instances()
    threads = ort_threads or fair_ort_threads(instances)
    if instances < 1 or threads < 1:
        raise PyTritonPeerError(f"instances and ort_threads must be >= 1, got {instances}, "
                                f"{threads}")
    repository = repository.resolve()
    for pipeline in pipelines:
        pipeline_binding(repository, pipeline)  # fail here, not in the child
    marker = f"pytriton-peer-{uuid.uuid4().hex[:12]}"
    env = _environment(marker, threads)
    scratch = Path(tempfile.mkdtemp(prefix="pytriton-peer-"))
    log_file = log_path or scratch / "pytriton.log"
    pick_ports = http_port is None and grpc_port is None
    try:
        for attempt in range(1, _ATTEMPTS + 1):
            http = http_port or free_port()
            grpc = grpc_port or free_port()
            while grpc == http:
                grpc = free_port()
            ready_file = scratch / f"ready-{attempt}"
            command = peer_command(repository, pipelines, http_port=http, grpc_port=grpc,
                                   instances=instances, ort_threads=threads,
                                   workspace=scratch / f"workspace-{attempt}",
                                   ready_file=ready_file)
            log.info("starting the PyTriton peer: %s", " ".join(command))
            offset = log_file.stat().st_size if log_file.exists() else 0
            with log_file.open("ab") as sink:
                process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=sink,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True)
            try:
                try:
                    _wait_ready(process, ready_file, http, pipelines, log_file=log_file,
                                log_offset=offset, timeout_s=startup_timeout_s,
                                retry_ports=pick_ports and attempt < _ATTEMPTS,
                                retry_start=attempt < _ATTEMPTS)
                except _Retry as e:
                    log.warning("the PyTriton peer failed to start: %s; starting it again", e)
                    continue
                server = PyTritonServer(pipelines=pipelines, http_port=http, grpc_port=grpc,
                                        pid=process.pid, marker=marker, instances=instances,
                                        ort_threads=threads, log_path=log_file)
                log.info("PyTriton peer ready at %s (%s; %d instances, ort_threads=%d)",
                         server.url, ", ".join(pipelines), instances, threads)
                yield server
                return
            finally:
                _stop(process, marker, grace_s=stop_grace_s)
        raise PyTritonPeerError(f"the PyTriton peer did not start in {_ATTEMPTS} attempts; "
                                f"log {log_file}:\n{log_tail(log_file)}")
    finally:
        if log_path is None:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            for path in scratch.iterdir():
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                scratch.rmdir()


def _shared_memory_of(pids: Sequence[int]) -> set[Path]:
    """The /dev/shm files the processes `pids` have mapped (from /proc/<pid>/maps)."""
    found = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in maps.splitlines():
            fields = line.split(maxsplit=5)  # address perms offset dev inode [path]
            path = fields[5] if len(fields) == 6 else ""
            if path.startswith(f"{SHM_DIR}/"):
                found.add(Path(path.removesuffix(" (deleted)")))
    return found


def _model_dirs_of(pids: Sequence[int]) -> set[Path]:
    """The model directories tritonserver made for PyTriton's models (``/tmp/folderXXXXXX``,
    a fixed template: TMPDIR is not read), from the command lines of their stubs
    (``triton_python_backend_stub /tmp/folderXXXXXX/1/model.py ...``)."""
    found = set()
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for arg in argv:
            path = Path(arg.decode(errors="replace"))
            if path.name == "model.py" and len(path.parents) >= 3:
                folder = path.parents[1]
                if folder.parent == Path(TRITON_TMP) and folder.name.startswith("folder"):
                    found.add(folder)
    return found


def _stop(process: subprocess.Popen[bytes], marker: str, *, grace_s: float) -> None:
    """SIGTERM the peer's Python process alone first and wait up to `grace_s`: PyTriton then
    stops tritonserver, which ends its stubs, and cleans up. Then `peer_process.stop_group`
    on whatever is left of the group (after a failed start: tritonserver, stubs,
    multiprocessing helpers, some of which ignore SIGTERM): SIGTERM, a short wait, SIGKILL.
    Last, SIGKILL any process of this peer that left the group (none is expected), and remove
    what tritonserver leaves when its exit timeout expires or a killed process could not: the
    model directories it made for PyTriton's models, the Python-backend regions PyTriton names
    after its process (``pytrtion<pid>-...``) and the shared memory the leftovers had mapped."""
    model_dirs = _model_dirs_of(group_members(process.pid))
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            log.warning("the PyTriton peer (pid %d) ignored SIGTERM for %.0f s", process.pid,
                        grace_s)
    leftovers = group_members(process.pid)
    shared = _shared_memory_of(leftovers)
    stop_group(process, grace_s=min(grace_s, _LEFTOVER_GRACE_S))
    left = marked_processes(marker)
    if left:
        log.warning("PyTriton peer processes %s outlived its group; killing them", left)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    shared |= set(Path(SHM_DIR).glob(f"{SHM_PREFIX}{process.pid}-*"))
    for path in sorted(shared):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            log.info("removed %s, left by the PyTriton peer", path)
    for folder in sorted(model_dirs):
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
