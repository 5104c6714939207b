"""Recognise an unchanged build cheaply: a stamp of the spec, inputs, toolchain and output tree.

Kept free of heavy imports (ONNX, ONNX Runtime, protobuf) so that an up-to-date check costs
only the spec parse and a walk over the output directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tritonkit.build.assets import asset_files
from tritonkit.build.toolchain import cache_key, generator_fingerprint, tool_versions
from tritonkit.export import factory_module_file
from tritonkit.spec import BuildSpec, Target


def default_cache_dir(spec: BuildSpec) -> Path:
    return spec.base_dir / ".cache" / "tritonkit"


def input_files(spec: BuildSpec) -> list[Path]:
    """Every file the spec reads: ONNX models (for a PyTorch source: its weights and its
    factory's module file, where found), samples, labels, Python steps' assets."""
    files: list[Path | None] = []
    for m in spec.models:
        if m.pytorch is None:
            files.append(m.onnx)
        else:  # `onnx` names where a build publishes the export, not an input
            files += [m.pytorch.weights, factory_module_file(m.pytorch.factory, spec.base_dir)]
        files += [m.serving.labels, m.calibration,
                  m.accuracy.holdout if m.accuracy else None,
                  m.warmup.samples if m.warmup else None]
    files += [s.serving.labels for s in spec.python_steps]
    files += [f for s in spec.python_steps for a in s.assets.values() for f in asset_files(a)]
    return sorted({f for f in files if f is not None})


def _inputs_state(spec: BuildSpec) -> dict[str, list[int]]:
    state = {}
    for path in input_files(spec):
        try:
            stat = path.stat()
        except OSError:
            continue  # the build itself reports missing inputs
        state[str(path)] = [stat.st_size, stat.st_mtime_ns]
    return state


def tree_state(root: Path) -> dict[str, list[int]]:
    return {
        p.relative_to(root).as_posix(): [p.stat().st_size, p.stat().st_mtime_ns]
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@dataclass(frozen=True, kw_only=True)
class BuildStamp:
    """Where the stamp of one output directory lives, and the fingerprint it must carry."""

    path: Path
    out: Path
    fingerprint: str

    @classmethod
    def for_build(cls, spec: BuildSpec, *, target: Target, out: Path, cache_dir: Path,
                  skip_plans: bool = False) -> BuildStamp:
        fingerprint = cache_key(spec.sha256, target.value, skip_plans, tool_versions(),
                                generator_fingerprint(), _inputs_state(spec))
        path = cache_dir / "stamps" / f"{cache_key(str(out.resolve()))}.json"
        return cls(path=path, out=out, fingerprint=fingerprint)

    def up_to_date(self) -> bool:
        """True when `out` was built from the same fingerprint and no file changed since."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return False
        return (data.get("fingerprint") == self.fingerprint and self.out.is_dir()
                and data.get("files") == tree_state(self.out))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"fingerprint": self.fingerprint,
                                         "files": tree_state(self.out)}))
