"""The BYTES batch guard: a Triton custom batching strategy, compiled from C, that keeps a
request with malformed BYTES framing out of other requests' dynamic batches.

Triton 2.51's core lets through a BYTES element whose length prefix claims more data than
the request carries; the Python backend then fails every request of that batch. Python
steps that take BYTES inputs with dynamic batching therefore get `batchstrategy.so` in
their model directory, which Triton loads by that name: the malformed request runs alone
and gets its own INVALID_ARG error, valid requests batch as before.

The guard relies on a queue delay of 0 on those steps (the spec enforces it): with a delay,
Triton's rate limiter merges separately formed batches at execution, and a pass over the
queue may include requests that only join the batch on a later pass.

Source: `src/tritonkit/runtime/native/bytes_batch_guard.c`; the compiled library is cached by
the hash of the source and the compiler's version.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from functools import cache
from pathlib import Path

import tritonkit.runtime
from tritonkit.build.artifact_cache import ArtifactCache
from tritonkit.errors import NativeBuildError
from tritonkit.spec import PythonStepSpec

log = logging.getLogger(__name__)

GUARD_SOURCE = Path(tritonkit.runtime.__file__).resolve().parent / "native" / "bytes_batch_guard.c"
# The name Triton's dynamic batcher looks for in a model's version and model directories.
GUARD_LIBRARY = "batchstrategy.so"
COMPILE_FLAGS = ("-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC")


def needs_batch_guard(step: PythonStepSpec) -> bool:
    """A batched Python step with dynamic batching and at least one BYTES input."""
    return (step.serving.max_batch_size > 0 and step.serving.dynamic_batching is not None
            and step.takes_bytes)


def _compiler() -> str:
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    raise NativeBuildError(
        "the BYTES batch guard (a small C library Triton loads as batchstrategy.so) needs a C "
        "compiler: install gcc (Debian: apt-get install gcc), or turn the step's dynamic "
        "batching off in the spec")


@cache
def _compiler_version(compiler: str) -> str:
    done = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.splitlines()[0] if done.stdout else compiler


def compile_batch_guard(cache: ArtifactCache) -> Path:
    """The compiled guard library (built once per source and compiler)."""
    compiler = _compiler()
    key = hashlib.sha256(GUARD_SOURCE.read_bytes()
                         + _compiler_version(compiler).encode()).hexdigest()[:16]

    def build(tmp: Path) -> None:
        command = [compiler, *COMPILE_FLAGS, "-o", str(tmp / GUARD_LIBRARY), str(GUARD_SOURCE)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise NativeBuildError(f"compiling {GUARD_SOURCE.name} failed "
                                   f"({' '.join(command)}):\n{done.stderr.strip()}")
        log.info("compiled %s with %s", GUARD_LIBRARY, compiler)

    entry, _ = cache.produce("batch_guard", key, build)
    return entry / GUARD_LIBRARY
