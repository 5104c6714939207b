"""The in-process limit: the pipeline's own pre -> model -> post, with no server in between.

One process per core (multiprocessing with `spawn`), each running the pipeline of a built
repository in-process (`TunedPipeline`: the ensemble's wiring and Python step functions from
`ReferencePipeline`, the ONNX model on ONNX Runtime's CPU provider with 1 intra-op thread and
1 inter-op thread), over the same encoded images the servers get. For each batch size of the
sweep, every process warms up, then all run batches for the same wall-clock window; the
throughput is the sum of the processes' images/s. No request decoding, no HTTP, no queueing:
what is left is the cost of the work itself, the ceiling any server can reach on this machine.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import onnxruntime as ort

from harness.benchmarks.errors import BenchmarkError
from tritonkit.build import ReferencePipeline
from tritonkit.repository import read_config
from tritonkit.runtime import parameters as parameter_names

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 4, 16, 32)
DEFAULT_DURATION_S = 2.5
_START_MARGIN_S = 0.05  # lets every process receive its start time before the window opens
_MAX_PREBUILT_BATCHES = 16


class InprocessLimitError(BenchmarkError):
    """The in-process limit could not be measured (a worker failed, hung or died)."""


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------- the pipeline


class OnnxSession:
    """An ONNX step on ONNX Runtime's CPU provider: sequential execution, one inter-op thread
    and `intra_op_threads` intra-op threads."""

    def __init__(self, path: Path, *, intra_op_threads: int) -> None:
        options = ort.SessionOptions()
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = intra_op_threads
        self.session = ort.InferenceSession(str(path), sess_options=options,
                                            providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, dict(feeds))
        return dict(zip(self.output_names, outputs, strict=True))


def _onnx_path(model_dir: Path) -> Path:
    versions = sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    if not versions:
        raise BenchmarkError(f"{model_dir}: no version directory")
    path = model_dir / str(versions[-1]) / parameter_names.DEFAULT_ONNX_MODEL_FILE
    if not path.is_file():
        raise BenchmarkError(f"{model_dir.name}: {path} is missing (build the local or "
                             f"onnxruntime target)")
    return path


class TunedPipeline:
    """An ensemble of a built repository run in-process, with ONNX Runtime's threads set.

    Wiring and Python steps come from `ReferencePipeline` (so they are exactly what the
    reference and the Python backend run); each ONNX step runs on its own session made by
    `OnnxSession` (CPU provider, sequential execution, 1 inter-op thread, `intra_op_threads`
    intra-op threads).
    Calling it raises ReferenceRunError (a ToolkitError) naming the rows a step rejected.
    """

    def __init__(self, repository: Path, pipeline: str, *, intra_op_threads: int) -> None:
        if intra_op_threads < 1:
            raise BenchmarkError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
        self.name = pipeline
        self.intra_op_threads = intra_op_threads
        self.reference = ReferencePipeline(repository, pipeline)
        config = self.reference.config
        self.max_batch_size = int(config.max_batch_size)
        self.input_names = tuple(t.name for t in config.input)
        self.output_names = tuple(self.reference.output_names)
        self._onnx: dict[int, OnnxSession] = {}
        for index, (step, _) in enumerate(self.reference.steps):
            model_dir = repository / step.model_name
            parameters = {k: v.string_value
                          for k, v in read_config(model_dir / "config.pbtxt").parameters.items()}
            if parameter_names.FUNCTION in parameters:
                continue  # a Python step: ReferencePipeline's runner calls its function
            self._onnx[index] = OnnxSession(_onnx_path(model_dir),
                                            intra_op_threads=intra_op_threads)
        log.info("%s: loaded %d steps (%d ONNX, intra_op_threads=%d)", pipeline,
                 len(self.reference.steps), len(self._onnx), intra_op_threads)

    @property
    def onnx_sessions(self) -> tuple[OnnxSession, ...]:
        """The ONNX steps' runners, in pipeline order."""
        return tuple(self._onnx[index] for index in sorted(self._onnx))

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = dict(inputs)
        for index, (step, run) in enumerate(self.reference.steps):
            feeds = {model_input: tensors[tensor]
                     for model_input, tensor in step.input_map.items()}
            onnx = self._onnx.get(index)
            outputs = onnx(feeds) if onnx is not None else run(feeds)
            for model_output, tensor in step.output_map.items():
                tensors[tensor] = outputs[model_output]
        return {name: tensors[name] for name in self.output_names}


def image_batch(images: Sequence[bytes]) -> np.ndarray:
    """Encoded images as the ensemble's IMAGE tensor: BYTES (object) of shape [N, 1]."""
    batch = np.empty((len(images), 1), dtype=object)
    batch[:, 0] = list(images)
    return batch


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, kw_only=True)
class BatchThroughput:
    """Throughput of all processes together at one batch size."""

    batch_size: int
    images_per_s: float
    images: int  # images the processes finished in their windows
    process_images_per_s: tuple[float, ...]
    cpu_s: float  # CPU time the processes spent in their windows (robust on a busy machine)

    @property
    def images_per_cpu_s(self) -> float:
        """Images per CPU-second: the cost of the work, whatever else shares the cores."""
        return self.images / self.cpu_s if self.cpu_s > 0 else 0.0


@dataclass(frozen=True, kw_only=True)
class InprocessLimitResult:
    pipeline: str
    processes: int
    ort_threads: int
    duration_s: float
    points: tuple[BatchThroughput, ...]

    @property
    def best(self) -> BatchThroughput:
        return max(self.points, key=lambda p: p.images_per_s)

    @property
    def images_per_s(self) -> float:
        """The limit: images/s at the best batch size."""
        return self.best.images_per_s


# --------------------------------------------------------------------------- worker protocol


@dataclass(frozen=True, kw_only=True)
class _Prepare:
    batch_size: int


@dataclass(frozen=True, kw_only=True)
class _Run:
    start_at: float  # time.monotonic() values: one clock for every process on the machine
    stop_at: float


@dataclass(frozen=True, kw_only=True)
class _Stop:
    pass


@dataclass(frozen=True, kw_only=True)
class _Ready:
    pass


@dataclass(frozen=True, kw_only=True)
class _Measured:
    images: int
    elapsed_s: float
    cpu_s: float


@dataclass(frozen=True, kw_only=True)
class _Failed:
    message: str


@dataclass(frozen=True, kw_only=True)
class _WorkerSetup:
    repository: Path
    pipeline: str
    images: tuple[bytes, ...]
    offset: int  # where this worker starts in `images`, so workers do not run in lockstep


def _batches(setup: _WorkerSetup, input_name: str, batch_size: int) -> list[dict[str, np.ndarray]]:
    count = len(setup.images)
    batches = min(_MAX_PREBUILT_BATCHES, max(1, math.ceil(count / batch_size)))
    return [{input_name: image_batch([setup.images[(setup.offset + b * batch_size + i) % count]
                                      for i in range(batch_size)])}
            for b in range(batches)]


def _run_window(pipeline: TunedPipeline, batches: Sequence[Mapping[str, np.ndarray]],
                batch_size: int, run: _Run) -> _Measured:
    delay = run.start_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    start = time.monotonic()
    cpu_start = time.process_time()
    done = 0
    now = start
    while now < run.stop_at:
        pipeline(batches[done % len(batches)])
        done += 1
        now = time.monotonic()
    return _Measured(images=done * batch_size, elapsed_s=now - start,
                     cpu_s=time.process_time() - cpu_start)


def _worker(connection: Connection, setup: _WorkerSetup) -> None:
    """One process of the measurement: load once, then answer the parent's commands."""
    try:
        pipeline = TunedPipeline(setup.repository, setup.pipeline, intra_op_threads=1)
        if len(pipeline.input_names) != 1:
            raise InprocessLimitError(f"{setup.pipeline}: the in-process limit feeds one image "
                                      f"input; the ensemble has {list(pipeline.input_names)}")
        connection.send(_Ready())
        batches: list[dict[str, np.ndarray]] = []
        batch_size = 0
        while True:
            command = connection.recv()
            if isinstance(command, _Stop):
                return
            if isinstance(command, _Prepare):
                batch_size = command.batch_size
                batches = _batches(setup, pipeline.input_names[0], batch_size)
                for batch in batches[:2]:  # warm-up: first runs at a new shape allocate
                    pipeline(batch)
                connection.send(_Ready())
            elif isinstance(command, _Run):
                connection.send(_run_window(pipeline, batches, batch_size, command))
    except Exception as e:  # report any failure to the parent instead of dying silently
        connection.send(_Failed(message=f"{type(e).__name__}: {e}"))


class _Workers:
    """The worker processes and their pipes; always stopped by `close`."""

    def __init__(self, setups: Sequence[_WorkerSetup]) -> None:
        context = multiprocessing.get_context("spawn")
        self.connections: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for index, setup in enumerate(setups):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_worker, args=(child_end, setup),
                                      name=f"inprocess-limit-{index}", daemon=True)
            process.start()
            child_end.close()
            self.connections.append(parent_end)
            self.processes.append(process)

    def send(self, command: _Prepare | _Run | _Stop) -> None:
        for connection in self.connections:
            connection.send(command)

    def receive(self, timeout_s: float) -> list[_Ready | _Measured]:
        deadline = time.monotonic() + timeout_s
        answers: list[_Ready | _Measured] = []
        for index, connection in enumerate(self.connections):
            if not connection.poll(max(0.0, deadline - time.monotonic())):
                raise InprocessLimitError(f"worker {index} did not answer within {timeout_s} s")
            try:
                answer = connection.recv()
            except EOFError as e:
                code = self.processes[index].exitcode
                raise InprocessLimitError(f"worker {index} died (exit code {code})") from e
            if isinstance(answer, _Failed):
                raise InprocessLimitError(f"worker {index}: {answer.message}")
            answers.append(answer)
        return answers

    def close(self) -> None:
        for connection in self.connections:
            try:
                connection.send(_Stop())
            except (BrokenPipeError, OSError):
                pass  # already gone
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        for connection in self.connections:
            connection.close()


def measure_inprocess_limit(
    repository: Path, pipeline: str, images: Sequence[bytes], *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    processes: int | None = None,
    duration_s: float = DEFAULT_DURATION_S,
    startup_timeout_s: float = 120.0,
) -> InprocessLimitResult:
    """Images/s of the pipeline run in-process by one process per core, per batch size.

    Each batch size gets a warm-up and then a `duration_s` window in which every process runs
    batches (cycling over `images`) back to back. Batch sizes above the ensemble's
    max_batch_size are skipped, as a server would refuse them.
    """
    if not images:
        raise InprocessLimitError("no images to measure with")
    if duration_s <= 0:
        raise InprocessLimitError(f"duration_s must be positive, got {duration_s}")
    count = processes or available_cores()
    sizes = sorted(set(batch_sizes))
    if not sizes or sizes[0] < 1:
        raise InprocessLimitError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
    max_batch = int(read_config(repository / pipeline / "config.pbtxt").max_batch_size)
    if max_batch > 0:
        skipped = [s for s in sizes if s > max_batch]
        sizes = [s for s in sizes if s <= max_batch]
        if skipped:
            log.warning("%s: batch sizes %s exceed max_batch_size %d; skipped", pipeline,
                        skipped, max_batch)
        if not sizes:
            raise InprocessLimitError(f"every batch size exceeds {pipeline}'s "
                                      f"max_batch_size {max_batch}")
    frozen = tuple(images)
    setups = [_WorkerSetup(repository=repository, pipeline=pipeline, images=frozen,
                           offset=i * len(frozen) // count) for i in range(count)]
    log.info("%s: in-process limit with %d processes, batch sizes %s, %.1f s each",
             pipeline, count, sizes, duration_s)
    workers = _Workers(setups)
    try:
        workers.receive(startup_timeout_s)
        points: list[BatchThroughput] = []
        for batch_size in sizes:
            workers.send(_Prepare(batch_size=batch_size))
            workers.receive(startup_timeout_s)
            start_at = time.monotonic() + _START_MARGIN_S
            workers.send(_Run(start_at=start_at, stop_at=start_at + duration_s))
            answers = workers.receive(duration_s + startup_timeout_s)
            measured = [a for a in answers if isinstance(a, _Measured)]
            rates = tuple(m.images / m.elapsed_s for m in measured)
            point = BatchThroughput(batch_size=batch_size, images_per_s=sum(rates),
                                    images=sum(m.images for m in measured),
                                    process_images_per_s=rates,
                                    cpu_s=sum(m.cpu_s for m in measured))
            log.info("%s: batch %d -> %.1f images/s (%.1f images per CPU-second)", pipeline,
                     batch_size, point.images_per_s, point.images_per_cpu_s)
            points.append(point)
    finally:
        workers.close()
    return InprocessLimitResult(pipeline=pipeline, processes=count, ort_threads=1,
                                duration_s=duration_s, points=tuple(points))
