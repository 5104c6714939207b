"""docker/versions.env agrees with src/tritonkit/releases.py and with every deployment file."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scaleout.errors import ScaleoutError
from harness.scaleout.versions import (
    VERSIONS_FILE,
    consistency_problems,
    file_problems,
    read_versions,
    release_problems,
)
from tritonkit.errors import ToolkitError
from tritonkit.releases import (
    CLASSIFICATION_BYTES_FIX,
    RELEASES,
    Release,
    tensorrt_api_surface,
    version_triplet,
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
    pinned = read_versions(ROOT / VERSIONS_FILE).tensorrt_version
    path = tmp_path / "versions.env"
    path.write_text(text.replace(f"TENSORRT_VERSION={pinned}", "TENSORRT_VERSION=10.7.0.23"),
                    encoding="utf-8")
    problems = release_problems(read_versions(path))
    assert any("TENSORRT_VERSION=10.7.0.23" in p for p in problems)


def test_the_pinned_release_has_the_classification_fixes() -> None:
    """One classification request on a BYTES output kills a Triton without server PR #8267
    (SIGFPE); #8603 bounds classification outputs. The production pin must have both."""
    entry = RELEASES[read_versions(ROOT / VERSIONS_FILE).ngc_release]
    assert entry.classification_bytes_fix
    assert "#8267" in CLASSIFICATION_BYTES_FIX and "#8603" in CLASSIFICATION_BYTES_FIX


def test_releases_state_the_fix_only_from_triton_2_66() -> None:
    # #8603 is in r26.02 (Triton 2.66.0) and later, #8267 in r25.07 (2.59.1) and later.
    for entry in RELEASES.values():
        major, minor, _ = version_triplet(entry.triton)
        assert entry.classification_bytes_fix == ((major, minor) >= (2, 66)), entry.name


def test_tensorrt_api_is_the_held_surface_of_the_release_tensorrt() -> None:
    held = {"10.8.0", "10.16", "11.1"}
    for entry in RELEASES.values():
        assert entry.tensorrt_api == tensorrt_api_surface(entry.tensorrt), entry.name
        assert entry.tensorrt_api is None or entry.tensorrt_api in held
    assert tensorrt_api_surface("10.16.0.72") == "10.16"
    assert tensorrt_api_surface("11.1.0.106") == "11.1"
    assert tensorrt_api_surface("10.8.0.43") == "10.8.0"
    assert tensorrt_api_surface("10.9.0.34") is None
    with pytest.raises(ToolkitError, match="tensorrt_api"):
        Release(name="99.01", triton="2.0.0", tensorrt="10.16.0.72", cuda="13.2.0",
                tensorrt_api="11.1", classification_bytes_fix=True)


def test_missing_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "versions.env"
    path.write_text("NGC_RELEASE=26.03\n", encoding="utf-8")
    with pytest.raises(ScaleoutError, match="TRITON_VERSION"):
        read_versions(path)
