"""docker/: hadolint on the Dockerfiles, `docker-compose config`, and the server flags parse on
the real tritonserver (the 2.51 binary of the nvidia-pytriton wheel)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.scaleout.server_flags import read_server_flags, unsupported_flags
from harness.scaleout.shm_size import MIB, estimate_shm_size

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "docker"
HADOLINT = Path(sys.executable).parent / "hadolint"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))


def _tool(name: str, fallback: Path | None = None) -> str:
    found = shutil.which(name) or (str(fallback) if fallback and fallback.exists() else None)
    if found is None:
        pytest.fail(f"{name} is not installed; run `make setup` (scripts/install_system_deps.sh "
                    "and the dev extra provide it)")
    return found


def test_there_are_two_dockerfiles() -> None:
    assert [p.name for p in DOCKERFILES] == ["plan-builder.Dockerfile", "serving.Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    hadolint = _tool("hadolint", HADOLINT)
    result = subprocess.run(
        [hadolint, "--config", str(DOCKER / ".hadolint.yaml"), "--format", "json",
         str(dockerfile)],
        capture_output=True, text=True, timeout=60, check=False)
    findings = json.loads(result.stdout or "[]")
    assert findings == [], findings
    assert result.returncode == 0, result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    hadolint = _tool("hadolint", HADOLINT)
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN pip install numpy\n", encoding="utf-8")
    result = subprocess.run(
        [hadolint, "--config", str(DOCKER / ".hadolint.yaml"), "--format", "json", str(bad)],
        capture_output=True, text=True, timeout=60, check=False)
    codes = {f["code"] for f in json.loads(result.stdout)}
    assert {"DL3007", "DL3013", "DL3026"} <= codes
    assert result.returncode != 0


def test_serving_image_is_non_root_with_the_entrypoint() -> None:
    text = (DOCKER / "serving.Dockerfile").read_text(encoding="utf-8")
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and not users[-1].startswith(("root", "0"))
    assert 'ENTRYPOINT ["/opt/triton/entrypoint.sh"]' in text


def _compose_config(*args: str) -> dict[str, object]:
    compose = _tool("docker-compose")
    result = subprocess.run(
        [compose, "-f", str(DOCKER / "compose.yaml"), *args, "config"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    loaded = yaml.safe_load(result.stdout)
    assert isinstance(loaded, dict)
    return loaded


def test_compose_config_is_valid_and_complete() -> None:
    config = _compose_config("--profile", "scaleout")
    services = config["services"]
    assert isinstance(services, dict)
    tritons = [name for name in services if str(name).startswith("triton")]
    assert len(tritons) == 3
    for name in tritons:
        service = services[name]
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
        assert service["read_only"] is True
        assert any(str(v).endswith(":/models:ro") for v in service["volumes"])
        assert "model_ready.py" in " ".join(service["healthcheck"]["test"])
    assert {"gateway", "prometheus"} <= set(services)


def test_compose_default_profile_runs_one_triton() -> None:
    services = _compose_config()["services"]
    assert isinstance(services, dict)
    always = sorted(name for name, service in services.items() if not service.get("profiles"))
    assert always == ["prometheus", "triton"]
    assert all(s.get("profiles", ["scaleout"]) == ["scaleout"] for s in services.values()
               if s.get("profiles"))


def test_compose_shm_size_covers_the_repository() -> None:
    config = _compose_config()
    shm = str(config["services"]["triton"]["shm_size"])  # type: ignore[index]
    assert shm.endswith("m")
    need = estimate_shm_size(ROOT / "model_repository")
    assert int(shm[:-1]) * MIB >= need.total_bytes, (shm, need.compose_value)


def test_prometheus_scrapes_every_triton() -> None:
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    targets = config["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["triton:8002", "triton-2:8002", "triton-3:8002"]


def test_server_flags_restrict_the_admin_apis() -> None:
    flags = read_server_flags(DOCKER / "triton-server.flags", admin_key="k")
    http = next(f for f in flags if f.startswith("--http-restricted-api="))
    grpc = next(f for f in flags if f.startswith("--grpc-restricted-protocol="))
    for flag in (http, grpc):
        apis, header = flag.split("=", 1)[1].split(":", 1)
        assert set(apis.split(",")) >= {"model-repository", "shared-memory", "logging", "trace"}
        assert header == "triton-admin-key=k"
    assert "--model-control-mode=none" in flags


def test_server_flags_are_known_to_tritonserver() -> None:
    flags = read_server_flags(DOCKER / "triton-server.flags", admin_key="k")
    assert unsupported_flags(flags) == []
    assert unsupported_flags(["--no-such-flag=1"]) == ["--no-such-flag=1"]
