from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tritonkit.build.artifact_cache import ArtifactCache
from tritonkit.build.batch_guard import GUARD_LIBRARY, compile_batch_guard, needs_batch_guard
from tritonkit.spec import load_spec

REPO_ROOT = Path(__file__).resolve().parents[3]
HOOKS = ("TRITONBACKEND_ModelBatchIncludeRequest", "TRITONBACKEND_ModelBatchInitialize",
         "TRITONBACKEND_ModelBatchFinalize", "TRITONBACKEND_ModelBatcherInitialize",
         "TRITONBACKEND_ModelBatcherFinalize")


def test_only_batched_bytes_steps_get_the_guard() -> None:
    spec = load_spec(REPO_ROOT / "models.yaml")
    guarded = {s.name for s in spec.python_steps if needs_batch_guard(s)}
    assert guarded == {"digits_preprocess", "resnet_preprocess", "detection_preprocess",
                       "text_tokenize"}


@pytest.mark.skipif(shutil.which("nm") is None, reason="binutils' nm is not installed")
def test_compiled_guard_exports_every_batching_hook_and_is_cached(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    library = compile_batch_guard(cache)
    assert library.name == GUARD_LIBRARY and library.stat().st_size > 0
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(library)], check=True,
                             capture_output=True, text=True).stdout
    assert all(f" T {hook}\n" in symbols for hook in HOOKS)
    mtime = library.stat().st_mtime_ns
    assert compile_batch_guard(cache) == library and library.stat().st_mtime_ns == mtime
