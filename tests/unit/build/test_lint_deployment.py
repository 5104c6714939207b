"""`lint --release` and the declared GPU architectures: what a deployment refuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.build.repo_factory import (
    digits_configs,
    write_plan_manifest,
    write_repository,
)
from tritonkit.build.manifest import MANIFEST_NAME
from tritonkit.errors import ToolkitError
from tritonkit.repository.lint import LintProblem, lint_repository

ROOT = Path(__file__).resolve().parents[3]
PLAN_DIR = "digits_classifier_trt/1"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write_repository(tmp_path / "models", digits_configs())


def errors_of(repo: Path, **kwargs: object) -> list[LintProblem]:
    """The errors of a lint (the release warnings on BYTES outputs are tested in test_lint)."""
    return [p for p in lint_repository(repo, **kwargs) if not p.warning]  # type: ignore[arg-type]


def errors(repo: Path, **kwargs: object) -> list[str]:
    return [str(p) for p in errors_of(repo, **kwargs)]


def _set_gpu(version_dir: Path, compute_capability: str | None) -> None:
    path = version_dir / MANIFEST_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    data["gpu"] = (None if compute_capability is None
                   else {"name": "NVIDIA H200", "compute_capability": compute_capability})
    path.write_text(json.dumps(data), encoding="utf-8")


def test_cli_lint_release_refuses_a_plan_of_another_tensorrt(repo: Path) -> None:
    write_plan_manifest(repo / PLAN_DIR, tensorrt="10.7.0.23")  # the TensorRT of 24.12
    result = subprocess.run(
        [sys.executable, "-m", "tritonkit", "lint", str(repo), "--release", "25.01"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 1
    assert "built with TensorRT 10.7.0.23, but release 25.01 serves TensorRT 10.8.0.43" in (
        result.stdout)
    ok = subprocess.run(
        [sys.executable, "-m", "tritonkit", "lint", str(repo), "--release", "24.12"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_plan_for_a_declared_architecture_passes(repo: Path) -> None:
    write_plan_manifest(repo / PLAN_DIR, tensorrt="10.8.0.43")
    _set_gpu(repo / PLAN_DIR, "9.0")
    assert errors(repo, release="25.01", compute_capabilities=["9.0", "8.9"]) == []


def test_plan_for_an_undeclared_architecture_is_refused(repo: Path) -> None:
    write_plan_manifest(repo / PLAN_DIR, tensorrt="10.8.0.43")
    _set_gpu(repo / PLAN_DIR, "8.0")
    problems = [str(p) for p in errors_of(repo, release="25.01",
                                                 compute_capabilities=["9.0"])]
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{PLAN_DIR}/model.plan: built for compute capability 8.0 (NVIDIA H200), but the "
        "deployment declares 9.0")
    # without a declaration only the TensorRT version is checked
    assert errors(repo, release="25.01") == []


def test_architecture_check_works_without_a_release(repo: Path) -> None:
    write_plan_manifest(repo / PLAN_DIR, tensorrt="10.7.0.23")
    _set_gpu(repo / PLAN_DIR, "8.9")
    problems = [str(p) for p in lint_repository(repo, compute_capabilities=["9.0"])]
    assert len(problems) == 1
    assert "compute capability 8.9" in problems[0]


def test_manifest_without_gpu_is_reported(repo: Path) -> None:
    write_plan_manifest(repo / PLAN_DIR, tensorrt="10.8.0.43")
    _set_gpu(repo / PLAN_DIR, None)
    problems = [str(p) for p in lint_repository(repo, compute_capabilities=["9.0"])]
    assert problems == [
        f"{PLAN_DIR}/model.plan: its manifest records no GPU compute capability, so it cannot "
        "be checked against the declared 9.0"
    ]


def test_malformed_declaration_is_an_error(repo: Path) -> None:
    with pytest.raises(ToolkitError, match="major.minor"):
        lint_repository(repo, compute_capabilities=["sm90"])


VERSION_COMPATIBLE_FLAG = "--backend-config=tensorrt,version-compatible=true"


def test_a_version_compatible_plan_of_an_older_10x_loads_on_the_release(repo: Path) -> None:
    # The point of a version-compatible plan: built by 10.7 (24.12), served by 10.8 (25.01).
    write_plan_manifest(repo / PLAN_DIR, tensorrt="10.7.0.23", version_compatible=True,
                        server_flags=(VERSION_COMPATIBLE_FLAG,))
    assert errors(repo, release="25.01") == []
    # ... but never on an older runtime than the one that built it
    write_plan_manifest(repo / PLAN_DIR, tensorrt="10.8.0.43", version_compatible=True)
    problems = [str(p) for p in errors_of(repo, release="24.12")]
    assert len(problems) == 1
    assert "a version-compatible plan loads only on the same or a later TensorRT" in problems[0]


def test_plan_compatibility_rules() -> None:
    from tritonkit.tensorrt.compatibility import plan_loads_on

    assert plan_loads_on("10.8.0.43", "10.8.0.1", version_compatible=False)
    assert not plan_loads_on("10.7.0.23", "10.8.0.43", version_compatible=False)
    assert plan_loads_on("10.7.0.23", "10.16.0.1", version_compatible=True)
    assert plan_loads_on("10.16.0.1", "11.1.0.1", version_compatible=True)  # NVIDIA: 10 -> 11
    assert not plan_loads_on("11.1.0.1", "10.16.0.1", version_compatible=True)
    assert not plan_loads_on("8.6.1", "11.1.0", version_compatible=True)
    assert not plan_loads_on("8.5.3", "8.6.1", version_compatible=True)  # before 8.6: none


def test_lint_requires_the_server_flags_a_plan_needs(repo: Path, tmp_path: Path) -> None:
    write_plan_manifest(repo / PLAN_DIR, tensorrt="10.8.0.43", version_compatible=True,
                        server_flags=(VERSION_COMPATIBLE_FLAG,))
    flags = tmp_path / "triton-server.flags"
    flags.write_text("# serving flags\n--strict-readiness=true\n", encoding="utf-8")

    result = subprocess.run(
        [sys.executable, "-m", "tritonkit", "lint", str(repo), "--server-flags", str(flags)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)

    assert result.returncode == 1
    assert (f"{PLAN_DIR}/model.plan: needs the tritonserver flag {VERSION_COMPATIBLE_FLAG}"
            in result.stdout)
    flags.write_text(f"--strict-readiness=true\n{VERSION_COMPATIBLE_FLAG}\n", encoding="utf-8")
    assert lint_repository(repo, server_flags=[VERSION_COMPATIBLE_FLAG]) == []


def test_the_serving_flags_cover_every_committed_plan_recipe() -> None:
    from tritonkit.tensorrt.compatibility import read_server_flags

    flags = read_server_flags(ROOT / "docker" / "triton-server.flags")
    recipes = sorted((ROOT / "model_repository").glob("*/plan_recipe.json"))
    assert recipes, "model_repository/ holds no plan recipes"
    for recipe in recipes:
        needed = json.loads(recipe.read_text(encoding="utf-8"))["server_flags"]
        assert set(needed) <= set(flags), recipe
