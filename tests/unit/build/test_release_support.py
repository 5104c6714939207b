"""Spec options against the targeted release's TensorRT: refused at spec load, with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonkit.errors import SpecError
from tritonkit.spec import parse_spec

SPEC = "models: [{name: m, onnx: m.onnx, max_batch_size: 8, tensorrt: {%s}}]"


def test_same_compute_capability_is_refused_for_tensorrt_10_8(tmp_path: Path):
    text = SPEC % "hardware_compatibility: same_compute_capability"

    with pytest.raises(SpecError) as caught:
        parse_spec(text, tmp_path / "models.yaml", release="25.01")

    message = str(caught.value)
    assert message.startswith("models.yaml: models[0].tensorrt.hardware_compatibility: ")
    assert "tensorrt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY" in message
    assert "TensorRT 10.8.0.43 of NGC release 25.01 lacks" in message
    assert "TensorRT 10.16" in message  # the held release that has it
    # the same option is fine where the TensorRT has it, and without a release to check
    parse_spec(text, tmp_path / "models.yaml", release="26.03")
    parse_spec(text, tmp_path / "models.yaml")


@pytest.mark.parametrize("release", ["25.01", "26.03"])
def test_options_every_held_tensorrt_has_pass(tmp_path: Path, release: str):
    text = SPEC % "hardware_compatibility: ampere_plus, version_compatible: true"
    spec = parse_spec(text, tmp_path / "models.yaml", release=release)
    assert spec.models[0].tensorrt.version_compatible is True


def test_an_unknown_release_is_a_spec_error(tmp_path: Path):
    with pytest.raises(SpecError, match=r"targets unknown NGC release '19\.01'"):
        parse_spec(SPEC % "", tmp_path / "models.yaml", release="19.01")


def test_the_build_cli_checks_the_project_pin(tmp_path: Path):
    """`build` reads docker/versions.env beside the spec when no --release is given."""
    import subprocess
    import sys

    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "versions.env").write_text("# pin\nNGC_RELEASE=25.01\n")
    (tmp_path / "models.yaml").write_text(SPEC % "hardware_compatibility: same_compute_capability")
    root = Path(__file__).resolve().parents[3]

    result = subprocess.run(
        [sys.executable, "-m", "tritonkit", "build", "--spec", str(tmp_path / "models.yaml"),
         "--target", "tensorrt", "--out", str(tmp_path / "repo")],
        capture_output=True, text=True, cwd=root, timeout=120, check=False)

    assert result.returncode == 1
    assert result.stderr.startswith("SpecError: models.yaml: models[0].tensorrt."
                                    "hardware_compatibility:"), result.stderr
    assert not (tmp_path / "repo").exists()
