"""docker/versions.env agrees with build_scripts/releases.py and with every deployment file."""

from __future__ import annotations

from pathlib import Path

import pytest

from build_scripts.releases import RELEASES
from scaleout.errors import ScaleoutError
from scaleout.versions import (
    VERSIONS_FILE,
    consistency_problems,
    file_problems,
    read_versions,
    release_problems,
)

ROOT = Path(__file__).resolve().parents[3]


def test_versions_env_is_an_entry_of_releases_py() -> None:
    versions = read_versions(ROOT / VERSIONS_FILE)
    entry = RELEASES[versions.ngc_release]
    assert (versions.triton_version, versions.tensorrt_version, versions.cuda_version) == (
        entry.triton, entry.tensorrt, entry.cuda)
    assert versions.triton_image == entry.triton_image
    assert versions.tensorrt_image == entry.tensorrt_image
    assert release_problems(versions) == []


def test_versions_env_cites_the_support_matrix() -> None:
    text = (ROOT / VERSIONS_FILE).read_text(encoding="utf-8")
    assert "docs.nvidia.com/deeplearning/frameworks/support-matrix" in text


def test_every_deployment_file_uses_the_release() -> None:
    assert consistency_problems(ROOT) == []


def test_readme_docker_and_manifests_name_the_release_images() -> None:
    versions = read_versions(ROOT / VERSIONS_FILE)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert versions.triton_image in readme
    assert versions.tensorrt_image in readme
    serving = (ROOT / "docker" / "serving.Dockerfile").read_text(encoding="utf-8")
    assert f"FROM {versions.triton_image}" in serving
    builder = (ROOT / "docker" / "plan-builder.Dockerfile").read_text(encoding="utf-8")
    assert f"FROM {versions.tensorrt_image}" in builder
    compose = (ROOT / "docker" / "compose.yaml").read_text(encoding="utf-8")
    assert f"image: {versions.serving_image}" in compose


def test_a_stale_tag_is_reported(tmp_path: Path) -> None:
    versions = read_versions(ROOT / VERSIONS_FILE)
    stale = tmp_path / "Dockerfile"
    stale.write_text("FROM nvcr.io/nvidia/tritonserver:24.12-py3\n"
                     "image: triton-onnx-toolkit/serving:24.12\n", encoding="utf-8")
    problems = file_problems(stale, versions, shown="Dockerfile")
    assert len(problems) == 2
    assert "24.12" in problems[0]


def test_a_versions_file_that_disagrees_with_releases_py(tmp_path: Path) -> None:
    text = (ROOT / VERSIONS_FILE).read_text(encoding="utf-8")
    path = tmp_path / "versions.env"
    path.write_text(text.replace("TENSORRT_VERSION=10.8.0.43", "TENSORRT_VERSION=10.7.0.23"),
                    encoding="utf-8")
    problems = release_problems(read_versions(path))
    assert any("TENSORRT_VERSION=10.7.0.23" in p for p in problems)


def test_missing_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "versions.env"
    path.write_text("NGC_RELEASE=25.01\n", encoding="utf-8")
    with pytest.raises(ScaleoutError, match="TRITON_VERSION"):
        read_versions(path)
