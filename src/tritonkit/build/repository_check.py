"""`build --check`: regenerate a repository into a temp dir and compare it with a committed one."""

from __future__ import annotations

import difflib
import filecmp
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tritonkit.build.batch_guard import GUARD_LIBRARY
from tritonkit.build.builder import build_repository
from tritonkit.build.manifest import MANIFEST_NAME
from tritonkit.spec import BuildSpec, Target

log = logging.getLogger(__name__)

# Produced only where TensorRT and a GPU exist; git-ignored binaries and their provenance.
_PLAN_ARTIFACTS = ("model.plan", MANIFEST_NAME)


@dataclass(frozen=True, kw_only=True)
class Difference:
    path: str
    problem: str  # "missing", "unexpected", "differs"
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.path}: {self.problem}"
        return f"{text}\n{self.detail}" if self.detail else text


def _files(root: Path, *, ignore_plans: bool) -> set[str]:
    files = set()
    for path in root.rglob("*"):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(root)
        if (ignore_plans and len(rel.parts) == 3 and rel.parts[1].isdigit()
                and rel.name in _PLAN_ARTIFACTS):  # <model>/<version>/, not <model>/assets/
            continue
        if len(rel.parts) == 2 and rel.name == GUARD_LIBRARY:  # compiled here, git-ignored
            continue
        files.add(rel.as_posix())
    return files


def _text_diff(expected: Path, actual: Path, name: str) -> str:
    try:
        a = actual.read_text(encoding="utf-8").splitlines()
        b = expected.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        return "  (binary content differs)"
    lines = list(difflib.unified_diff(a, b, f"committed/{name}", f"generated/{name}",
                                      lineterm="", n=1))
    return "\n".join("  " + line for line in lines[:40])


def compare_trees(expected: Path, actual: Path, *, ignore_plans: bool) -> list[Difference]:
    """Differences of `actual` (committed) from `expected` (generated)."""
    want = _files(expected, ignore_plans=ignore_plans)
    have = _files(actual, ignore_plans=ignore_plans) if actual.is_dir() else set()
    diffs = [Difference(path=p, problem="missing") for p in sorted(want - have)]
    diffs += [Difference(path=p, problem="unexpected") for p in sorted(have - want)]
    for rel in sorted(want & have):
        if not filecmp.cmp(expected / rel, actual / rel, shallow=False):
            diffs.append(Difference(path=rel, problem="differs",
                                    detail=_text_diff(expected / rel, actual / rel, rel)))
    return sorted(diffs, key=lambda d: d.path)


def check_repository(spec: BuildSpec, *, target: Target, repository: Path,
                     cache_dir: Path | None = None, release: str | None = None,
                     on_gate: Callable[[str], None] | None = None) -> list[Difference]:
    """Regenerate into a temp dir and list every difference from `repository`.

    For the `tensorrt` target the plans are not built (TensorRT need not be present):
    everything else is compared, and plan binaries and their manifests are ignored.
    `on_gate` receives one line per precision variant: its accuracy gate, as measured.
    """
    ignore_plans = target is Target.TENSORRT
    with tempfile.TemporaryDirectory(prefix="build-check-") as tmp:
        generated = Path(tmp) / "repository"
        result = build_repository(spec, target=target, out=generated, cache_dir=cache_dir,
                                  skip_plans=ignore_plans, remember=False,
                                  nominal_out=repository, release=release)
        diffs = compare_trees(generated, repository, ignore_plans=ignore_plans)
    for model in result.models:
        if on_gate is not None and model.accuracy is not None:
            on_gate(f"accuracy gate: {model.accuracy.describe()}")
    log.info("check of %s: %d difference(s)", repository, len(diffs))
    return diffs
