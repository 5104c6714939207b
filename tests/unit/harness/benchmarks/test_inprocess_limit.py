"""The in-process limit on a tiny built repository: same answers as the reference, real workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from examples.model_zoo.digits import encode_png
from harness.benchmarks.errors import BenchmarkError
from harness.benchmarks.inprocess_limit import (
    BatchThroughput,
    InprocessLimitError,
    InprocessLimitResult,
    TunedPipeline,
    image_batch,
    measure_inprocess_limit,
)
from tests.onnx_factories import make_image_model
from tritonkit.build.builder import build_repository
from tritonkit.build.reference_runner import ReferencePipeline, ReferenceRunError
from tritonkit.spec import Target, parse_spec

PIPELINE = "pipe"
MAX_BATCH = 16
SPEC = f"""
models:
  - name: clf
    onnx: clf.onnx
    max_batch_size: {MAX_BATCH}
    labels: labels.txt
python_steps:
  - name: pre
    function: tritonkit.processing.steps:preprocess_images
    parameters: {{height: 8, width: 8, channels: 1, mean: 0.5, std: 0.25}}
    max_batch_size: {MAX_BATCH}
    inputs: [{{name: IMAGE, dtype: BYTES, dims: [1]}}]
    outputs: [{{name: PIXELS, dtype: FP32, dims: [1, 8, 8]}}]
  - name: post
    function: tritonkit.processing.steps:classify_top_k
    parameters: {{top_k: 3}}
    labels: labels.txt
    max_batch_size: {MAX_BATCH}
    inputs: [{{name: LOGITS, dtype: FP32, dims: [10]}}]
    outputs:
      - {{name: LABELS, dtype: BYTES, dims: [3]}}
      - {{name: SCORES, dtype: FP32, dims: [3]}}
      - {{name: CLASS_INDICES, dtype: INT32, dims: [3]}}
pipelines:
  - name: {PIPELINE}
    max_batch_size: {MAX_BATCH}
    steps:
      - pre
      - model: clf
        inputs: {{pixels: PIXELS}}
        outputs: {{logits: LOGITS}}
      - post
"""


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("limit")
    make_image_model(root / "clf.onnx")
    (root / "labels.txt").write_text("".join(f"digit-{i}\n" for i in range(10)))
    out = root / "model_repository"
    build_repository(parse_spec(SPEC, root / "models.yaml"), target=Target.LOCAL, out=out,
                     cache_dir=root / "cache", remember=False)
    return out


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    rng = np.random.default_rng(7)
    return [encode_png(rng.integers(0, 256, (8 + i % 3, 8), dtype=np.uint8)) for i in range(24)]


def test_tuned_pipeline_matches_the_reference(repository: Path, images: list[bytes]) -> None:
    tuned = TunedPipeline(repository, PIPELINE, intra_op_threads=1)
    reference = ReferencePipeline(repository, PIPELINE)
    batch = {"IMAGE": image_batch(images[:MAX_BATCH])}
    ours, theirs = tuned(batch), reference(batch)
    assert tuned.output_names == ("LABELS", "SCORES", "CLASS_INDICES")
    assert tuned.input_names == ("IMAGE",)
    assert tuned.max_batch_size == MAX_BATCH
    assert ours["LABELS"].shape == (MAX_BATCH, 3)
    assert ours["LABELS"].tolist() == theirs["LABELS"].tolist()
    assert ours["LABELS"][0, 0].startswith(b"digit-")
    np.testing.assert_array_equal(ours["CLASS_INDICES"], theirs["CLASS_INDICES"])
    np.testing.assert_allclose(ours["SCORES"], theirs["SCORES"], atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
def test_tuned_sessions_get_the_thread_settings(repository: Path, threads: int) -> None:
    sessions = TunedPipeline(repository, PIPELINE, intra_op_threads=threads).onnx_sessions
    assert len(sessions) == 1
    options = sessions[0].session.get_session_options()
    assert options.intra_op_num_threads == threads
    assert options.inter_op_num_threads == 1
    assert sessions[0].session.get_providers() == ["CPUExecutionProvider"]


def test_tuned_pipeline_refuses_no_threads_and_reports_bad_rows(repository: Path,
                                                                images: list[bytes]) -> None:
    with pytest.raises(BenchmarkError, match="intra_op_threads must be >= 1"):
        TunedPipeline(repository, PIPELINE, intra_op_threads=0)
    tuned = TunedPipeline(repository, PIPELINE, intra_op_threads=1)
    with pytest.raises(ReferenceRunError, match="row 1: .*PNG"):
        tuned({"IMAGE": image_batch([images[0], images[1][:20]])})


def test_image_batch_is_bytes_n_by_1(images: list[bytes]) -> None:
    batch = image_batch(images[:3])
    assert batch.shape == (3, 1)
    assert batch.dtype == object
    assert batch[2, 0] == images[2]


def test_best_is_the_fastest_batch_size() -> None:
    result = InprocessLimitResult(pipeline="p", processes=2, ort_threads=1, duration_s=1.0,
                                  points=(
        BatchThroughput(batch_size=1, images_per_s=10.0, images=10, process_images_per_s=(5, 5),
                        cpu_s=2.0),
        BatchThroughput(batch_size=4, images_per_s=30.0, images=30,
                        process_images_per_s=(15, 15), cpu_s=2.0),
        BatchThroughput(batch_size=16, images_per_s=20.0, images=20,
                        process_images_per_s=(10, 10), cpu_s=0.0)))
    assert result.best.batch_size == 4
    assert result.images_per_s == 30.0
    assert result.best.images_per_cpu_s == 15.0
    assert result.points[2].images_per_cpu_s == 0.0


def test_measures_each_batch_size_with_real_workers(repository: Path,
                                                   images: list[bytes]) -> None:
    result = measure_inprocess_limit(repository, PIPELINE, images, batch_sizes=(4, 1, 64),
                                     processes=2, duration_s=0.3)
    assert (result.pipeline, result.processes, result.ort_threads) == (PIPELINE, 2, 1)
    assert [p.batch_size for p in result.points] == [1, 4]  # 64 > max_batch_size: skipped
    for point in result.points:
        assert len(point.process_images_per_s) == 2
        assert all(rate > 0 for rate in point.process_images_per_s)
        assert point.images % point.batch_size == 0
        assert point.images_per_s == pytest.approx(sum(point.process_images_per_s))
        assert 0 < point.cpu_s < 2 * 0.3 * 1.5  # two processes, busy about 0.3 s each
        assert point.images_per_cpu_s > 0
    assert result.images_per_s == max(p.images_per_s for p in result.points)


def test_a_failing_worker_fails_the_measurement(repository: Path, images: list[bytes]) -> None:
    with pytest.raises(InprocessLimitError, match=r"worker 0: ReferenceRunError: row 0"):
        measure_inprocess_limit(repository, PIPELINE, [b"\x89PNG\r\n\x1a\nbroken"],
                                batch_sizes=(1,), processes=1, duration_s=0.2)


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"batch_sizes": (32, 64)}, "every batch size exceeds"),
    ({"batch_sizes": (0, 1)}, "batch sizes must be >= 1"),
    ({"duration_s": 0.0}, "duration_s must be positive"),
])
def test_bad_settings_fail_before_any_worker_starts(repository: Path, images: list[bytes],
                                                    kwargs: dict[str, object],
                                                    problem: str) -> None:
    with pytest.raises(InprocessLimitError, match=problem):
        measure_inprocess_limit(repository, PIPELINE, images, **kwargs)  # type: ignore[arg-type]
