"""The README's quickstart commands, run as a user would: as subprocesses of the real CLIs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.onnx_factories import make_classifier
from tritonkit.server.local_triton import find_orphans
from tritonkit.server.ports import pick_free_ports

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


def test_own_model_quickstart_build_and_lint(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    make_classifier(exports / "my_classifier.onnx", features=16, classes=4)
    rng = np.random.default_rng(0)
    np.savez(exports / "holdout.npz", x=rng.standard_normal((64, 16)).astype(np.float32))
    (tmp_path / "my_models.yaml").write_text("""version: 1
models:
  - name: my_classifier
    onnx: exports/my_classifier.onnx
    max_batch_size: 32
    dynamic_batching: {preferred_batch_sizes: [8, 32], max_queue_delay_us: 200}
  - name: my_classifier_fp16
    onnx: exports/my_classifier.onnx
    precision: fp16
    accuracy: {metric: top1_agreement, threshold: 0.99, holdout: exports/holdout.npz}
    max_batch_size: 32
""")
    built = run("tritonkit", "build", "--spec", "my_models.yaml", "--target", "local",
                "--out", "my_repo", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "my_classifier_fp16" in built.stdout and "PASS" in built.stdout
    linted = run("tritonkit", "lint", "my_repo", cwd=tmp_path)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "no problems" in linted.stdout


def test_build_cli_reports_bad_spec_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("models:\n  - {name: a, onnx: a.onnx, max_batch_size: -1}\n")
    result = run("tritonkit", "build", "--spec", "bad.yaml", "--out", "r", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "SpecError: bad.yaml: models[0].max_batch_size: must be >= 0, got -1")


def test_serve_classify_models_health_then_sigterm(example_repository: Path,
                                                  tmp_path: Path) -> None:
    # A private copy, so that this server's processes are told apart from the session's.
    repository = tmp_path / "model_repository"
    shutil.copytree(example_repository, repository)
    http_port, grpc_port, metrics_port = pick_free_ports(3)
    serve = subprocess.Popen(
        [sys.executable, "-m", "tritonkit", "serve", str(repository),
         "--http-port", str(http_port), "--grpc-port", str(grpc_port),
         "--metrics-port", str(metrics_port)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 180
        line = ""
        assert serve.stdout is not None
        while time.monotonic() < deadline and "ready" not in line:
            line = serve.stdout.readline()
            assert line or serve.poll() is None, serve.stderr.read() if serve.stderr else ""
        assert f"grpc://127.0.0.1:{grpc_port}" in line

        images = run("examples.model_zoo", "digits-images", "--count", "2", "--out",
                     str(tmp_path / "digits"))
        assert images.returncode == 0, images.stderr
        files = sorted(str(p) for p in (tmp_path / "digits").glob("*.png"))
        classified = run("tritonkit_client", "classify", "--url", f"grpc://127.0.0.1:{grpc_port}",
                         "--model", "digits", "--top-k", "3", *files, "--json")
        assert classified.returncode == 0, classified.stderr
        payload = json.loads(classified.stdout)
        assert [entry["path"] for entry in payload] == files
        # test000_label2.png, test001_label4.png: both classified correctly by the model
        assert [entry["predictions"][0]["label"] for entry in payload] == ["2", "4"]
        assert all(len(entry["predictions"]) == 3 for entry in payload)
        text = run("tritonkit_client", "classify", "--url", f"http://127.0.0.1:{http_port}",
                   "--model", "digits", *files)
        assert text.returncode == 0, text.stderr
        first_labels = [line.split(": ", 1)[1].split(" ", 1)[0]
                        for line in text.stdout.splitlines() if line.strip()]
        assert first_labels == [Path(f).stem.rsplit("label", 1)[1] for f in files]

        models = run("tritonkit_client", "models", "--url", f"http://127.0.0.1:{http_port}")
        assert models.returncode == 0 and "digits_classifier" in models.stdout
        health = run("tritonkit_client", "health", "--url", f"http://127.0.0.1:{http_port}",
                     "--model", "digits")
        assert health.returncode == 0, health.stderr
        missing = run("tritonkit_client", "health", "--url", f"http://127.0.0.1:{http_port}",
                      "--model", "no_such_model")
        assert missing.returncode != 0
    finally:
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(timeout=60)
    assert code == 0
    assert find_orphans(model_repository=repository) == []
