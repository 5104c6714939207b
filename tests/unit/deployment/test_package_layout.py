"""The installed layout: one import root per distribution, a light client and runtime, and
harnesses and examples that use only the library's public API.

The public API of `tritonkit` is its top-level modules (`tritonkit.errors`, `tritonkit.releases`)
and the names each subpackage lists in `__all__` (`from tritonkit.server import LocalTriton`);
of `tritonkit_client`, its package and its public (non-underscore) modules.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[3]
OUTSIDE_THE_WHEEL = ("harness", "examples")
TOP_LEVEL_MODULES = {"tritonkit.errors", "tritonkit.releases"}
HEAVY = ("onnx", "onnxruntime", "torch", "polygraphy", "tensorrt", "tritonkit")


def _imports(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, module, imported names) of every import statement of a source file."""
    found: list[tuple[int, str, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name, ()) for a in node.names)
    return found


def _private_use(module: str, names: tuple[str, ...]) -> str | None:
    """Why importing `names` from `module` reaches past the public API, or None."""
    parts = module.split(".")
    if parts[0] == "tritonkit_client":
        if any(p.startswith("_") for p in parts) or any(n.startswith("_") for n in names):
            return "a private module or name of tritonkit_client"
        return None
    if parts[0] != "tritonkit":
        return None
    if module in TOP_LEVEL_MODULES:
        return None
    if len(parts) == 1:
        allowed = {m.rsplit(".", 1)[1] for m in TOP_LEVEL_MODULES}
        extra = set(names) - allowed
        return f"{sorted(extra)} from tritonkit itself" if extra else None
    if len(parts) > 2 or not names:
        return f"{module} (import from its subpackage, tritonkit.{parts[1]})"
    exported = set(getattr(importlib.import_module(module), "__all__", ()))
    missing = set(names) - exported
    return f"{sorted(missing)}, not in {module}.__all__" if missing else None


def test_harnesses_and_examples_use_only_the_public_api() -> None:
    problems = []
    for folder in OUTSIDE_THE_WHEEL:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, module, names in _imports(path):
                why = _private_use(module, names)
                if why:
                    problems.append(f"{path.relative_to(ROOT)}:{line}: {why}")
    assert problems == []


def test_the_public_api_check_catches_a_deep_import() -> None:
    assert _private_use("tritonkit.server.local_triton", ("LocalTriton",)) is not None
    assert _private_use("tritonkit.server", ("prepare_backend_dir",)) is not None
    assert _private_use("tritonkit_client._wire", ("x",)) is not None
    assert _private_use("tritonkit.server", ("LocalTriton",)) is None


def test_the_runtime_imports_nothing_of_the_build_side() -> None:
    build_side = ("tritonkit.build", "tritonkit.precision", "tritonkit.tensorrt",
                  "tritonkit.repository", "tritonkit.spec", "tritonkit.server", "onnx",
                  "polygraphy")
    problems = []
    for folder in ("runtime", "processing"):
        for path in sorted((ROOT / "src" / "tritonkit" / folder).rglob("*.py")):
            for line, module, _ in _imports(path):
                if module.startswith(build_side) and not module.startswith("onnxruntime"):
                    problems.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    assert problems == []


@pytest.mark.parametrize(("package", "forbidden"), [
    ("tritonkit_client", HEAVY),
    ("tritonkit.runtime.python_step", ("onnx", "onnxruntime", "torch", "polygraphy",
                                       "tritonclient", "tritonkit.build", "tritonkit.spec")),
])
def test_importing_it_loads_no_heavy_package(package: str, forbidden: tuple[str, ...]) -> None:
    code = (f"import sys, {package}\n"
            f"print(' '.join(m for m in sys.modules for f in {forbidden!r} "
            f"if m == f or m.startswith(f + '.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60).stdout.split()
    assert loaded == []


def test_each_distribution_installs_one_root() -> None:
    main = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert main["tool"]["setuptools"]["packages"]["find"] == {"where": ["src"],
                                                              "include": ["tritonkit*"]}
    client = tomllib.loads((ROOT / "clients" / "pyproject.toml").read_text(encoding="utf-8"))
    assert client["tool"]["setuptools"]["packages"]["find"] == {"include": ["tritonkit_client*"]}
    assert sorted(p.name for p in (ROOT / "src").iterdir() if p.is_dir()
                  and not p.name.endswith(".egg-info")) == ["tritonkit"]


@pytest.mark.parametrize("command", ["build", "lint", "serve"])
def test_the_build_scripts_are_thin_entry_points_to_the_cli(command: str) -> None:
    script = ROOT / "build_scripts" / f"{command}_repository.py"
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                            text=True, check=False, timeout=60, cwd=ROOT / "build_scripts")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: tritonkit {command}")
