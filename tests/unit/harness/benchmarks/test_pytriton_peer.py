"""The PyTriton peer's pure logic (binding, command line, port conflicts, its processes) and the
`load_test.peers` setting that puts it in the hey load test next to the FastAPI peer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from harness.benchmarks import pytriton_peer as pt
from harness.benchmarks.errors import ScenarioError
from harness.benchmarks.runner import FULL, SMOKE
from harness.benchmarks.scenarios import Peer, PeerLoad, load_scenarios

ENSEMBLE = """\
name: "digits"
platform: "ensemble"
max_batch_size: 64
input { name: "IMAGE" data_type: TYPE_STRING dims: 1 }
output { name: "PROBABILITIES" data_type: TYPE_FP32 dims: 10 label_filename: "labels.txt" }
ensemble_scheduling {
  step {
    model_name: "digits_preprocess" model_version: -1
    input_map { key: "IMAGE" value: "IMAGE" }
    output_map { key: "PIXELS" value: "PIXELS" }
  }
  step {
    model_name: "digits_classifier" model_version: -1
    input_map { key: "pixels" value: "PIXELS" }
    output_map { key: "probabilities" value: "PROBABILITIES" }
  }
}
"""
PREPROCESS = """\
name: "digits_preprocess"
backend: "python"
max_batch_size: 64
dynamic_batching { }
parameters { key: "function" value { string_value: "tritonkit.processing.steps:x" } }
"""
CLASSIFIER = """\
name: "digits_classifier"
backend: "onnxruntime"
max_batch_size: 64
dynamic_batching { preferred_batch_size: 16 preferred_batch_size: 128
                   max_queue_delay_microseconds: 200 }
"""


def repository(tmp_path: Path, *, classifier: str = CLASSIFIER,
               ensemble: str = ENSEMBLE) -> Path:
    for name, text in (("digits", ensemble), ("digits_preprocess", PREPROCESS),
                       ("digits_classifier", classifier)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.pbtxt").write_text(text, encoding="utf-8")
    return tmp_path


def test_binding_takes_the_ensemble_signature_and_the_onnx_models_batcher(
        tmp_path: Path) -> None:
    binding = pt.pipeline_binding(repository(tmp_path), "digits")
    assert binding.inputs == (pt.TensorSpec(name="IMAGE", dtype=np.bytes_, dims=(1,)),)
    assert binding.outputs == (pt.TensorSpec(name="PROBABILITIES", dtype=np.float32,
                                             dims=(10,)),)
    assert binding.max_batch_size == 64
    assert binding.preferred_batch_sizes == (16,)  # 128 > max_batch_size: Triton would refuse
    assert binding.max_queue_delay_us == 200


def test_binding_without_a_batcher_and_bad_repositories(tmp_path: Path) -> None:
    plain = tmp_path / "a"
    plain.mkdir()
    repository(plain, classifier='name: "digits_classifier"\nmax_batch_size: 64\n')
    binding = pt.pipeline_binding(plain, "digits")
    assert binding.preferred_batch_sizes == () and binding.max_queue_delay_us == 0
    with pytest.raises(pt.PyTritonPeerError, match="holds no model 'resnet'"):
        pt.pipeline_binding(plain, "resnet")
    with pytest.raises(pt.PyTritonPeerError, match="'digits_classifier' .* is not an ensemble"):
        pt.pipeline_binding(plain, "digits_classifier")
    unbatched = tmp_path / "b"
    unbatched.mkdir()
    repository(unbatched, ensemble=ENSEMBLE.replace("max_batch_size: 64", "max_batch_size: 0"))
    with pytest.raises(pt.PyTritonPeerError, match="does not batch"):
        pt.pipeline_binding(unbatched, "digits")


@pytest.mark.parametrize(("data_type", "expected"), [
    (mc.TYPE_STRING, np.bytes_), (mc.TYPE_FP32, np.float32), (mc.TYPE_INT64, np.int64),
    (mc.TYPE_UINT8, np.uint8), (mc.TYPE_BOOL, np.bool_)])
def test_numpy_dtype(data_type: int, expected: type) -> None:
    assert pt.numpy_dtype(data_type) is expected


def test_the_command_line_round_trips(tmp_path: Path) -> None:
    command = pt.peer_command(tmp_path, ["digits", "resnet"], http_port=8100, grpc_port=8101,
                              instances=2, ort_threads=1, workspace=tmp_path / "ws",
                              ready_file=tmp_path / "ready")
    assert command[:3] == [sys.executable, "-m", "harness.benchmarks.pytriton_peer"]
    args = pt.parse_args(command[3:])
    assert (args.repository, args.pipelines, args.http_port, args.grpc_port) == (
        tmp_path, ["digits", "resnet"], 8100, 8101)
    assert (args.instances, args.ort_threads) == (2, 1)
    assert (args.workspace, args.ready_file) == (tmp_path / "ws", tmp_path / "ready")
    defaults = pt.parse_args(["--repository", "r", "--pipelines", "digits", "--http-port", "1",
                              "--grpc-port", "2"])
    assert defaults.instances is None and defaults.ort_threads is None


@pytest.mark.parametrize("argv", [
    ["--pipelines", "digits", "digits"], ["--pipelines", "digits", "--instances", "0"],
    ["--pipelines", "digits", "--ort-threads", "-1"]])
def test_bad_command_lines_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        pt.parse_args(["--repository", "r", "--http-port", "1", "--grpc-port", "2", *argv])


def test_fair_configuration_splits_the_cores() -> None:
    cores = len(os.sched_getaffinity(0))
    assert pt.fair_instances() == cores
    assert pt.fair_ort_threads(cores) == 1
    assert pt.fair_ort_threads(1) == cores


def test_port_conflicts_are_recognised_in_tritonservers_log() -> None:
    taken = ('E1203 12:00:00.1 1 main.cc:1] "failed to start HTTP service: Unavailable - '
             "Socket '127.0.0.1:8000' already in use \"")
    assert pt.port_taken(f"I1203 loading\n{taken}\n")
    assert not pt.port_taken("E1203 failed to load 'digits'\nAddress already in use elsewhere")
    assert not pt.port_taken("")


def test_pytritons_handshake_race_is_worth_another_start() -> None:
    race = ('E1203 16:12:52.9 17070 model_lifecycle.cc:642] "failed to load \'digits\' version 1: '
            "Internal: TritonModelException: Model initialize error: Traceback (most recent "
            'call last):\\n  File \\"/tmp/f/1/model.py\\", line 425, in initialize\\n    '
            "inference_handler_config = get_config_from_handshake_server(handshake_socket)"
            '\\nConnectionRefusedError: [Errno 111] Connection refused\\n"')
    assert pt.handshake_race(race)
    assert pt.retry_reason(race) == "PyTriton's handshake between model instances failed"
    taken = "failed to start GRPC service: Unavailable - Socket '127.0.0.1:1' already in use"
    assert pt.retry_reason(taken) == "a port was taken before tritonserver bound it"
    other = "E1203 failed to load 'digits' version 1: Internal: ModuleNotFoundError: numpy"
    assert pt.retry_reason(other) is None and not pt.handshake_race(other)


def test_marked_processes_finds_the_peers_processes_by_their_environment() -> None:
    marker = "pytriton-peer-unit-test"
    env = {**os.environ, pt.MARKER_ENV: marker}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=env)
    try:
        assert pt.marked_processes(marker) == [child.pid]
        assert pt.marked_processes("another-peer") == []
    finally:
        child.kill()
        child.wait()
    assert pt.marked_processes(marker) == []


def _wait_for_exec(pid: int, argument: str) -> None:
    """Until the child has exec'd: between fork and exec its cmdline is still pytest's."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    deadline = time.monotonic() + 10
    while argument.encode() not in cmdline.read_bytes():
        assert time.monotonic() < deadline, f"process {pid} never showed {argument}"
        time.sleep(0.01)


def test_model_directories_are_read_from_the_stubs_command_lines() -> None:
    stub = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                             "/tmp/folderAbC123/1/model.py", "/home/folderX/1/model.py",
                             "/tmp/folderZ/model.py", "digits_0_0"])
    try:
        _wait_for_exec(stub.pid, "/tmp/folderAbC123/1/model.py")
        assert pt._model_dirs_of([stub.pid]) == {Path("/tmp/folderAbC123")}
    finally:
        stub.kill()
        stub.wait()
    assert pt._model_dirs_of([stub.pid]) == set()


def test_shared_memory_of_a_process_is_read_from_its_maps() -> None:
    block = shared_memory.SharedMemory(create=True, size=4096)
    try:
        assert Path(f"/dev/shm/{block.name.lstrip('/')}") in pt._shared_memory_of([os.getpid()])
        assert pt._shared_memory_of([2**22 + 12345]) == set()  # no such process
    finally:
        block.close()
        block.unlink()


def test_server_urls() -> None:
    server = pt.PyTritonServer(pipelines=("digits",), http_port=8100, grpc_port=8101, pid=1,
                               marker="m", instances=2, ort_threads=1, log_path=Path("x"))
    assert server.infer_url("digits") == "http://127.0.0.1:8100/v2/models/digits/infer"
    assert server.ready_url == "http://127.0.0.1:8100/v2/health/ready"
    assert server.http_hostport == "127.0.0.1:8100"


# --------------------------------------------------------------------------- load_test.peers

SCENARIOS = """\
version: 1
perf_analyzer:
  - {name: light_online, workload: light, concurrency: 1}
load_test:
  duration_s: 2
  concurrency: [8]
  batch_images: [1, 16]
"""


def scenarios(tmp_path: Path, peers: str | None) -> Path:
    path = tmp_path / "scenarios.yaml"
    text = SCENARIOS + (f"  peers: {peers}\n" if peers is not None else "")
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_both_shipped_files_put_pytriton_next_to_fastapi_online() -> None:
    for plan in (FULL, SMOKE):
        settings = load_scenarios(plan.scenarios).load_test
        assert [p.peer for p in settings.peers] == [Peer.FASTAPI, Peer.PYTRITON]
        assert settings.peer_shapes(Peer.FASTAPI) == settings.batch_images
        assert 1 in settings.peer_shapes(Peer.PYTRITON)
    full = load_scenarios(FULL.scenarios).load_test
    assert full.peer_shapes(Peer.PYTRITON) == full.batch_images
    smoke = load_scenarios(SMOKE.scenarios).load_test
    assert smoke.peer_shapes(Peer.PYTRITON) == (1,)  # the smoke run stays short


def test_peers_default_to_every_peer_at_every_shape(tmp_path: Path) -> None:
    settings = load_scenarios(scenarios(tmp_path, None)).load_test
    assert settings.peers == (PeerLoad(peer=Peer.FASTAPI, batch_images=(1, 16)),
                              PeerLoad(peer=Peer.PYTRITON, batch_images=(1, 16)))
    settings = load_scenarios(scenarios(tmp_path, "{fastapi: 1, pytriton: [1, 16]}")).load_test
    assert settings.peer_shapes(Peer.FASTAPI) == (1,)
    assert settings.peer_shapes(Peer.PYTRITON) == (1, 16)


@pytest.mark.parametrize(("peers", "field", "problem"), [
    ("{fastapi: [1]}", "load_test.peers", "must name every peer (fastapi, pytriton)"),
    ("{fastapi: [1], pytriton: [1], torchserve: [1]}", "load_test.peers",
     "unknown field(s) torchserve"),
    ("{fastapi: [1], pytriton: [1, 4]}", "load_test.peers.pytriton",
     "must be among load_test.batch_images [1, 16], got [4]"),
    ("{fastapi: [16], pytriton: [1]}", "load_test.peers.fastapi", "must include 1"),
    ("[fastapi, pytriton]", "load_test.peers", "must be a mapping"),
])
def test_bad_peers_name_the_field(tmp_path: Path, peers: str, field: str, problem: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenarios(scenarios(tmp_path, peers))
    assert field in str(caught.value) and problem in str(caught.value)
