"""One real local Triton for the whole integration session, serving the example repository."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.model_zoo.detector import build_detector
from examples.model_zoo.digits import build_digits
from examples.model_zoo.resnet import build_resnet
from examples.model_zoo.super_resolution import build_super_resolution
from examples.model_zoo.text_encoder import export_text_encoder
from tritonkit.build.builder import build_repository
from tritonkit.server.local_triton import LocalTriton, ServerURLs, find_orphans
from tritonkit.spec import Target, load_spec

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def example_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models.yaml built for the local target (the example models are trained if missing)."""
    build_digits(REPO_ROOT / "artifacts" / "digits")
    build_resnet(REPO_ROOT / "artifacts" / "resnet")
    build_detector(REPO_ROOT / "artifacts" / "detector")  # cached by `make models`
    export_text_encoder(REPO_ROOT / "artifacts" / "text_encoder")
    build_super_resolution(REPO_ROOT / "artifacts" / "super_resolution")
    out = tmp_path_factory.mktemp("served") / "model_repository"
    build_repository(load_spec(REPO_ROOT / "models.yaml"), target=Target.LOCAL, out=out,
                     remember=False)
    return out


@pytest.fixture(scope="session")
def triton_server(example_repository: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    """Starts the real tritonserver, waits for readiness, and always tears it down."""
    log_path = tmp_path_factory.mktemp("triton-log") / "tritonserver.log"
    server = LocalTriton(example_repository, log_path=log_path, startup_timeout_s=180)
    with server:
        yield server
    leftovers = find_orphans(instance_id=server.instance_id)
    assert not leftovers, f"server or stub processes survived the fixture: {leftovers}"


@pytest.fixture(scope="session")
def triton(triton_server: LocalTriton) -> ServerURLs:
    return triton_server.urls


@pytest.fixture(scope="session")
def digits_labels(example_repository: Path) -> list[str]:
    """The labels file of the digits pipeline's PROBABILITIES output (the classification
    extension answers with these)."""
    names = (example_repository / "digits" / "labels.txt").read_text().splitlines()
    assert len(names) == 10
    return names
