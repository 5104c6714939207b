"""The serving image's contract, reproduced without Docker (docker/serving.Dockerfile).

- A fresh virtualenv holds exactly what the image installs: `docker/install_runtime.sh` (the
  same script the Dockerfile runs) puts the tritonkit wheel's runtime part and the pins of
  `docker/requirements-serving.txt` into it, and nothing else. The ONNX models run on Triton's
  own ONNX Runtime backend, inside the server, as in the image (here the one built for the
  local server; the image brings its own).
- The repository is a copy outside the checkout, made read-only (the image mounts it so).
- The server starts through `docker/entrypoint.sh` with `docker/triton-server.flags`, from an
  unrelated working directory, and its Python-backend stubs run the fresh virtualenv.

Every pipeline then answers over HTTP and gRPC exactly as the in-process reference does on the
same copy. A repository whose tokenizer asset is gone fails to LOAD that step, with the reason,
while the server stays up and serves the rest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from tritonkit_client import connect, embed

from harness.benchmarks.workloads import load_workload
from tritonkit.build.reference_runner import ReferencePipeline
from tritonkit.repository.lint import lint_repository
from tritonkit.server.local_triton import LocalTriton, find_orphans, prepare_backend_dir
from tritonkit.server.onnxruntime_backend import onnxruntime_backend_library
from tritonkit.server.ports import pick_free_ports
from tritonkit.server.process_tree import spawn_group_leader, stop_group
from tritonkit.server.server_environment import INSTANCE_ENV_VAR, server_environment
from tritonkit.server.server_http import readiness
from tritonkit.server.triton_install import find_tritonserver

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER = REPO_ROOT / "docker"
STARTUP_TIMEOUT_S = 300
INSTALL_TIMEOUT_S = 900
# pipeline -> workload of the benchmark harness that feeds it (real encoded images, sentences)
PIPELINES = {"digits": "light", "resnet": "heavy", "detection": "detection",
             "embeddings": "embeddings"}
ROWS = 4
# pipeline -> (its input rows, the in-process reference's outputs)
References = dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]
TOKENIZER_STEP = "text_tokenize"


@dataclass(frozen=True, kw_only=True)
class ServingImage:
    http: str
    grpc: str
    pid: int
    repository: Path
    working_dir: Path
    venv: Path


def tree_digest(root: Path) -> dict[str, str]:
    """Every path under `root` with its content hash (directories marked), to prove nothing
    was written, as permission bits do not stop root. Python's byte-code caches are left out:
    the image sets PYTHONDONTWRITEBYTECODE; here the stub, run as root, may write them."""
    return {p.relative_to(root).as_posix(): "dir" if p.is_dir() else
            hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if "__pycache__" not in p.parts}


def set_writable(root: Path, writable: bool) -> None:
    write = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~write)


def _serving_venv(root: Path) -> Path:
    """A fresh virtualenv with exactly what the image installs."""
    wheels = root / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(wheels), str(REPO_ROOT)],
                   check=True, timeout=INSTALL_TIMEOUT_S, cwd=root)
    (wheel,) = wheels.glob("tritonkit-*.whl")
    venv = root / "serving-python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    subprocess.run(["bash", str(DOCKER / "install_runtime.sh"), str(wheel),
                    str(DOCKER / "requirements-serving.txt")],
                   check=True, timeout=INSTALL_TIMEOUT_S, env=env, cwd=root,
                   stdout=subprocess.DEVNULL)
    return venv


@pytest.fixture(scope="module")
def serving_image(example_repository: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingImage]:
    root = tmp_path_factory.mktemp("serving-image")
    venv = _serving_venv(root)
    repository = root / "models"  # the image's read-only /models mount
    shutil.copytree(example_repository, repository)
    set_writable(repository, False)
    working_dir = root / "cwd"  # unrelated to the checkout and to the repository
    working_dir.mkdir()

    installation = find_tritonserver()
    backend_dir = prepare_backend_dir(installation, root / "backends",
                                      onnxruntime_backend=onnxruntime_backend_library())
    server_bin = root / "bin"  # `tritonserver` on PATH, as in the image
    server_bin.mkdir()
    launcher = server_bin / "tritonserver"
    launcher.write_text(f'#!/bin/sh\nexec "{installation.server}" "$@"\n', encoding="utf-8")
    launcher.chmod(0o755)
    instance_id = uuid.uuid4().hex
    env = server_environment(installation, instance_id, {
        "MODEL_REPOSITORY": str(repository),
        "TRITON_FLAGS_FILE": str(DOCKER / "triton-server.flags"),
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.pop("TRITON_ADMIN_KEY", None)
    # the stub takes its Python environment from the first python3 on PATH: the serving venv
    env["PATH"] = os.pathsep.join([str(venv / "bin"), str(server_bin), env["PATH"]])
    http, grpc, metrics = pick_free_ports(3)
    command = ["bash", str(DOCKER / "entrypoint.sh"), f"--backend-directory={backend_dir}",
               "--http-address=127.0.0.1", f"--http-port={http}",
               "--grpc-address=127.0.0.1", f"--grpc-port={grpc}",
               "--metrics-address=127.0.0.1", f"--metrics-port={metrics}"]
    before = tree_digest(repository)
    log_path = root / "tritonserver.log"
    with log_path.open("wb") as log:
        proc = spawn_group_leader(command, env=env, cwd=working_dir, output=log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not ((answer := readiness(http)) and answer.status == 200):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the serving image did not become ready:\n"
                            f"{log_path.read_text(errors='replace')[-4000:]}")
            time.sleep(0.5)
        yield ServingImage(http=f"http://127.0.0.1:{http}", grpc=f"grpc://127.0.0.1:{grpc}",
                           pid=proc.pid, repository=repository, working_dir=working_dir,
                           venv=venv)
        assert proc.poll() is None, "the server died while serving"
    finally:
        stop_group(proc, timeout_s=30, name="tritonserver")
        set_writable(repository, True)  # so that pytest can remove it
    assert tree_digest(repository) == before, "serving wrote into the repository"
    assert not find_orphans(instance_id=instance_id)


def _process_environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_the_server_runs_the_image_layout(serving_image: ServingImage) -> None:
    repository, pid = serving_image.repository, serving_image.pid
    assert not repository.resolve().is_relative_to(REPO_ROOT)
    cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    assert cwd == serving_image.working_dir.resolve()
    assert not cwd.is_relative_to(REPO_ROOT)
    assert lint_repository(repository) == []  # no config names a path outside it
    # the Python-backend stubs run the serving venv, which holds the wheel, not the checkout
    instance = _process_environment(pid)[INSTANCE_ENV_VAR]
    stubs = [p for p in find_orphans(instance_id=instance) if p != pid]
    assert stubs, "no Python-backend stub runs"
    assert all(_process_environment(p)["PATH"].startswith(str(serving_image.venv / "bin"))
               for p in stubs)
    venv_python = serving_image.venv / "bin" / "python"
    located = subprocess.run(
        [str(venv_python), "-c", "import tritonkit.runtime, sys; "
         "print(tritonkit.runtime.__file__); print(sys.modules.get('onnx'))"],
        capture_output=True, text=True, check=True, cwd=serving_image.working_dir).stdout.split()
    assert Path(located[0]).is_relative_to(serving_image.venv)
    for absent in ("tritonkit.build", "onnxruntime", "onnx"):
        found = subprocess.run([str(venv_python), "-c", f"import {absent}"],
                               capture_output=True, text=True, check=False)
        assert found.returncode != 0, f"the serving venv holds {absent}"
    with urllib.request.urlopen(f"{serving_image.http}/v2/health/ready", timeout=10) as answer:
        assert answer.status == 200  # strict readiness: every model of the repository


@pytest.fixture(scope="module")
def references(serving_image: ServingImage) -> References:
    """Per pipeline: its input rows and the in-process reference's outputs on the same copy."""
    found = {}
    for pipeline, workload_name in PIPELINES.items():
        workload = load_workload(workload_name, count=ROWS)
        rows = np.array(list(workload.items), dtype=object).reshape(-1, 1)
        outputs = ReferencePipeline(serving_image.repository, pipeline)({workload.input_name: rows})
        found[pipeline] = (rows, {k: np.asarray(v) for k, v in outputs.items()})
    return found


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_every_pipeline_equals_the_in_process_reference(
        serving_image: ServingImage, references: References,
        pipeline: str, protocol: str) -> None:
    rows, expected = references[pipeline]
    input_name = load_workload(PIPELINES[pipeline], count=1).input_name
    url = serving_image.http if protocol == "http" else serving_image.grpc
    with connect(url, timeout_s=120) as client:
        served = client.infer(pipeline, {input_name: rows}, outputs=sorted(expected))
    assert sorted(served) == sorted(expected)
    for name, want in expected.items():
        got = served[name]
        assert got.shape == want.shape, name
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_embeddings_through_the_typed_client(
        serving_image: ServingImage, references: References,
        protocol: str) -> None:
    rows, expected = references["embeddings"]
    sentences = [r.decode() for r in rows.ravel()]
    url = serving_image.http if protocol == "http" else serving_image.grpc
    with connect(url, timeout_s=60) as client:
        vectors = embed(client, "embeddings", sentences)
    np.testing.assert_allclose(vectors, expected["EMBEDDING"], rtol=0, atol=1e-5)


def test_missing_tokenizer_fails_the_load_and_the_server_stays_up(
        example_repository: Path, tmp_path: Path) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    repository = tmp_path / "models"
    for name in (TOKENIZER_STEP, "text_pool"):
        shutil.copytree(example_repository / name, repository / name)
    missing = repository / TOKENIZER_STEP / "assets" / "tokenizer" / "tokenizer.json"
    missing.unlink()
    working_dir = tmp_path / "cwd"
    working_dir.mkdir()
    server = LocalTriton(repository, working_dir=working_dir, model_control="explicit",
                         load_models=["text_pool"], log_path=tmp_path / "tritonserver.log",
                         startup_timeout_s=STARTUP_TIMEOUT_S)
    with server:
        client = httpclient.InferenceServerClient(server.urls.http_hostport)
        with pytest.raises(InferenceServerException) as info:
            client.load_model(TOKENIZER_STEP)
        reason = str(info.value)
        for expected in ("TokenizerLoadError", "tokenizer_dir",
                         f"{TOKENIZER_STEP}/assets/tokenizer/tokenizer.json", "not found"):
            assert expected in reason
        index = {e.name: e for e in server.repository_index()}
        assert index[TOKENIZER_STEP].state == "UNAVAILABLE"
        assert "tokenizer.json not found" in (index[TOKENIZER_STEP].reason or "")
        assert not client.is_model_ready(TOKENIZER_STEP)
        # the server is up and serves the models that did load
        assert server.is_running() and client.is_server_live()
        with connect(server.urls.grpc, timeout_s=60) as typed:
            pooled = typed.infer("text_pool", {
                "HIDDEN": np.ones((1, 3, 384), dtype=np.float32),
                "ATTENTION_MASK": np.ones((1, 3), dtype=np.int64)})
        np.testing.assert_allclose(np.linalg.norm(pooled["EMBEDDING"], axis=1), 1.0, rtol=1e-5)
        client.close()
    assert not find_orphans(instance_id=server.instance_id)
