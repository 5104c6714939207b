"""A real tritonserver started by LocalTriton: serve, fail, stop, leave nothing.

Each server start costs a few seconds, so one module-scoped server answers the inference
tests; the other tests start a server only when the start itself is what they test.
"""

from __future__ import annotations

import json
import os
import platform
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import tritonkit.runtime
from tests.integration.python_model_factory import write_add_model, write_failing_model
from tritonkit.errors import ServerError
from tritonkit.server.local_triton import (
    STUB_BINARY,
    InstallationKind,
    LocalTriton,
    ModelControl,
    TritonInstallation,
    find_orphans,
    find_tritonserver,
    prepare_backend_dir,
)

pytestmark = pytest.mark.integration

CHILD_TIMEOUT_S = 120.0
ORPHAN_WAIT_S = 30.0


@pytest.fixture(scope="module")
def installation() -> TritonInstallation:
    try:
        return find_tritonserver()
    except ServerError as e:
        pytest.skip(f"no tritonserver available: {e}")


@pytest.fixture(scope="module")
def add_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("add_repo")
    write_add_model(repo)
    return repo


@pytest.fixture(scope="module")
def server(
    installation: TritonInstallation, add_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalTriton]:
    log_path = tmp_path_factory.mktemp("logs") / "server.log"
    with LocalTriton(add_repo, installation=installation, log_path=log_path) as running:
        yield running


def _wait_until_gone(instance_id: str, installation: TritonInstallation) -> list[int]:
    deadline = time.monotonic() + ORPHAN_WAIT_S
    while (left := find_orphans(instance_id=instance_id, installation=installation)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    return left


def _run_child(script: str, *args: str, tmp_dir: Path) -> subprocess.Popen[str]:
    # tritonkit is installed in this environment; the child needs no particular cwd.
    # TMPDIR: what a killed child cannot clean up stays in pytest's tmp_path.
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=tmp_dir,
        env={**os.environ, "TMPDIR": str(tmp_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_json_line(proc: subprocess.Popen[str], timeout_s: float) -> dict[str, object]:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"child printed nothing within {timeout_s} s; stderr:\n{err[-3000:]}")
    data = json.loads(line)
    assert isinstance(data, dict)
    return data


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on `port`, from /proc/net/tcp and tcp6 (hex form)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


# ------------------------------------------------------------------------ installation


def test_installation_has_a_stub_for_this_python(installation: TritonInstallation) -> None:
    assert installation.server.is_file()
    assert installation.python_stub.name == STUB_BINARY
    assert installation.python_stub.is_file()
    if installation.kind is InstallationKind.WHEEL:
        assert installation.python_version == f"{sys.version_info[0]}.{sys.version_info[1]}"
        assert installation.python_stub.parent.name == installation.python_version
        assert installation.library_dir is not None
        assert installation.library_dir.name == "nvidia_pytriton.libs"


def test_prepare_backend_dir_is_idempotent(
    installation: TritonInstallation, tmp_path: Path
) -> None:
    if installation.kind is InstallationKind.PATH:
        assert prepare_backend_dir(installation, tmp_path) == installation.backends_dir
        return
    first = prepare_backend_dir(installation, tmp_path / "backends")
    second = prepare_backend_dir(installation, tmp_path / "backends")
    assert first == second == tmp_path / "backends"
    python_dir = first / "python"
    assert sorted(p.name for p in python_dir.iterdir()) == [
        "libtriton_python.so", STUB_BINARY, "triton_python_backend_utils.py",
    ]
    assert (python_dir / STUB_BINARY).resolve() == installation.python_stub.resolve()


def test_port_in_use_is_refused_before_starting(
    installation: TritonInstallation, add_repo: Path
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = LocalTriton(add_repo, http_port=port, installation=installation)
        with pytest.raises(ServerError, match=f"HTTP port {port} on 127.0.0.1 is already in use"):
            server.start()
        assert server.pid is None


def test_conflicting_options_are_refused_when_made(add_repo: Path) -> None:
    with pytest.raises(
        ServerError, match="model_control must be one of 'none', 'explicit', 'poll', got 'bogus'"
    ):
        LocalTriton(add_repo, model_control="bogus")  # type: ignore[arg-type]
    with pytest.raises(
        ServerError, match=r"load_models=\['add'\] needs model_control='explicit' \(got 'poll'\)"
    ):
        LocalTriton(add_repo, model_control="poll", load_models=["add"])
    server = LocalTriton(add_repo, model_control="explicit", load_models=("add",))
    assert server.options.model_control is ModelControl.EXPLICIT
    assert server.options.load_models == ("add",)
    assert server.pid is None


# ------------------------------------------------------------------------ a running server


def test_http_json_inference(server: LocalTriton) -> None:
    body = json.dumps({
        "inputs": [
            {"name": "A", "datatype": "FP32", "shape": [3], "data": [1.0, 2.0, 3.0]},
            {"name": "B", "datatype": "FP32", "shape": [3], "data": [0.5, 0.25, -3.0]},
        ],
        "outputs": [{"name": "SUM"}],
    }).encode()
    request = urllib.request.Request(
        f"{server.urls.http}/v2/models/add/infer", data=body,
        headers={"Content-Type": "application/json"}, method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        answer = json.loads(response.read())
    (output,) = answer["outputs"]
    assert output["name"] == "SUM"
    assert output["shape"] == [3]
    assert output["data"] == [1.5, 2.25, 0.0]


def test_grpc_inference_runs_in_the_callers_environment(server: LocalTriton) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=server.urls.grpc_hostport)
    a = np.arange(5, dtype=np.float32)
    b = np.full(5, 10.0, dtype=np.float32)
    inputs = [grpcclient.InferInput("A", [5], "FP32"), grpcclient.InferInput("B", [5], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer("add", inputs)
    client.close()
    np.testing.assert_array_equal(result.as_numpy("SUM"), a + b)

    env = json.loads(result.as_numpy("ENV")[0])
    assert env["prefix"] == sys.prefix  # the stub uses this virtualenv
    assert env["python"] == platform.python_version()  # and this Python build
    assert env["numpy"] == np.__version__
    # and the tritonkit package installed there
    assert Path(env["tritonkit"]).resolve() == Path(tritonkit.runtime.__file__).resolve()


def test_binds_loopback_only(server: LocalTriton) -> None:
    urls = server.urls
    assert urls.http.startswith("http://127.0.0.1:")
    assert urls.grpc.startswith("grpc://127.0.0.1:")
    assert urls.metrics.startswith("http://127.0.0.1:")
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, ::ffff:127.0.0.1
    for url in (urls.http, urls.grpc, urls.metrics):
        addresses = _listening_addresses(int(url.rsplit(":", 1)[1]))
        assert addresses, f"nothing listens for {url}"
        assert addresses <= loopback, f"{url} listens on {addresses}"


def test_repository_index_and_metrics(server: LocalTriton) -> None:
    (entry,) = server.repository_index()
    assert (entry.name, entry.version, entry.state, entry.reason) == ("add", "1", "READY", None)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{server.urls.metrics}/metrics", timeout=30) as response:
        assert b"nv_inference_count" in response.read()


# ------------------------------------------------------------------------ start and stop


def test_explicit_mode_loads_only_named_models_and_stop_leaves_nothing(
    installation: TritonInstallation, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    write_add_model(repo, "add")
    write_add_model(repo, "other")
    server = LocalTriton(
        repo, model_control="explicit", load_models=["add"], installation=installation,
        log_path=tmp_path / "server.log",
    )
    with server:
        states = {e.name: e.state for e in server.repository_index()}
        assert states == {"add": "READY", "other": None}
        running = find_orphans(instance_id=server.instance_id, installation=installation)
        assert server.pid in running
        assert len(running) >= 2  # the server and the stub of `add`
        assert server.startup_s is not None and server.startup_s > 0
    assert find_orphans(instance_id=server.instance_id, installation=installation) == []
    assert server.pid is None
    server.stop()  # idempotent
    with pytest.raises(ServerError, match="not running"):
        _ = server.urls


def test_failed_load_reports_the_models_own_reason(
    installation: TritonInstallation, tmp_path: Path
) -> None:
    reason = "weights file /nonexistent/w.bin is missing"
    repo = tmp_path / "repo"
    write_add_model(repo, "add")
    write_failing_model(repo, "broken", reason)
    log_path = tmp_path / "server.log"
    server = LocalTriton(repo, installation=installation, startup_timeout_s=60, log_path=log_path)
    with pytest.raises(ServerError) as caught:
        server.start()
    message = str(caught.value)
    assert f"model 'broken' version 1 failed to load: Internal: RuntimeError: {reason}" in message
    assert "model 'add'" not in message
    assert str(log_path) in message
    assert reason in log_path.read_text()
    assert find_orphans(instance_id=server.instance_id, installation=installation) == []


_KILL_MYSELF = """
import json, os, signal, sys
from pathlib import Path
from tritonkit.server.local_triton import LocalTriton, find_orphans

server = LocalTriton(Path(sys.argv[1]), log_path=Path(sys.argv[2]))
server.start()
pids = find_orphans(instance_id=server.instance_id)
print(json.dumps({"instance_id": server.instance_id, "pid": server.pid, "pids": pids}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_sigkill_of_the_caller_leaves_no_server(
    installation: TritonInstallation, add_repo: Path, tmp_path: Path
) -> None:
    child = _run_child(
        _KILL_MYSELF, str(add_repo), str(tmp_path / "server.log"), tmp_dir=tmp_path
    )
    info = _read_json_line(child, CHILD_TIMEOUT_S)
    assert child.wait(timeout=CHILD_TIMEOUT_S) == -signal.SIGKILL
    pids = info["pids"]
    assert isinstance(pids, list)
    assert info["pid"] in pids
    assert len(pids) >= 2  # the server and the stub of `add`
    assert _wait_until_gone(str(info["instance_id"]), installation) == []


_SERVE = """
import json, sys
from pathlib import Path
from tritonkit.server.local_triton import serve_forever

def ready(urls):
    print(json.dumps({"http": urls.http, "grpc": urls.grpc, "metrics": urls.metrics}), flush=True)

sys.exit(serve_forever(Path(sys.argv[1]), log_path=Path(sys.argv[2]), on_ready=ready))
"""


def test_serve_forever_prints_urls_and_exits_0_on_sigterm(
    installation: TritonInstallation, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"  # its own repository: find_orphans filters on it
    write_add_model(repo)
    log_path = tmp_path / "server.log"
    child = _run_child(_SERVE, str(repo), str(log_path), tmp_dir=tmp_path)
    try:
        info = _read_json_line(child, CHILD_TIMEOUT_S)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{info['http']}/v2/health/ready", timeout=30) as response:
            assert response.status == 200
        assert str(info["grpc"]).startswith("grpc://127.0.0.1:")
        assert len(find_orphans(model_repository=repo, installation=installation)) >= 2
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=CHILD_TIMEOUT_S) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert find_orphans(model_repository=repo, installation=installation) == []
    assert "successfully unloaded 'add' version 1" in log_path.read_text()
