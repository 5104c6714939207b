"""Small Triton model repositories for tests, with every config built through model_config_pb2.

`digits_configs()` is a correct, digits-like pipeline (Python preprocess -> ONNX classifier ->
Python postprocess, wired by an ensemble) plus a TensorRT variant of the classifier. Tests copy
it, break one thing, and write it with `write_repository`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tests.onnx_factories import make_image_model
from tritonkit.build.manifest import ArtifactKind, Manifest, write_manifest
from tritonkit.hashing import sha256_file
from tritonkit.repository.config_io import CONFIG_NAME, write_config

BATCH = 8
PYTHON_MODEL = (
    "class TritonPythonModel:\n"
    "    def execute(self, requests):\n"
    "        raise NotImplementedError\n"
)


def tensor_in(
    name: str, dtype: int, dims: Sequence[int], *, reshape: Sequence[int] | None = None
) -> mc.ModelInput:
    t = mc.ModelInput(name=name, data_type=dtype, dims=list(dims))
    if reshape is not None:
        t.reshape.SetInParent()
        t.reshape.shape.extend(reshape)
    return t


def tensor_out(
    name: str, dtype: int, dims: Sequence[int], *, reshape: Sequence[int] | None = None
) -> mc.ModelOutput:
    t = mc.ModelOutput(name=name, data_type=dtype, dims=list(dims))
    if reshape is not None:
        t.reshape.SetInParent()
        t.reshape.shape.extend(reshape)
    return t


def step(
    model_name: str, inputs: Mapping[str, str], outputs: Mapping[str, str]
) -> mc.ModelEnsembling.Step:
    """A step; map keys are the model's tensor names, values the ensemble tensor names."""
    s = mc.ModelEnsembling.Step(model_name=model_name, model_version=-1)
    s.input_map.update(inputs)
    s.output_map.update(outputs)
    return s


def model(
    name: str,
    *,
    inputs: Sequence[mc.ModelInput],
    outputs: Sequence[mc.ModelOutput],
    platform: str = "",
    backend: str = "",
    max_batch_size: int = BATCH,
) -> mc.ModelConfig:
    config = mc.ModelConfig(
        name=name, platform=platform, backend=backend, max_batch_size=max_batch_size
    )
    config.input.extend(inputs)
    config.output.extend(outputs)
    return config


def ensemble(
    name: str,
    *,
    inputs: Sequence[mc.ModelInput],
    outputs: Sequence[mc.ModelOutput],
    steps: Sequence[mc.ModelEnsembling.Step],
    max_batch_size: int = BATCH,
) -> mc.ModelConfig:
    config = model(
        name, inputs=inputs, outputs=outputs, platform="ensemble", max_batch_size=max_batch_size
    )
    config.ensemble_scheduling.step.extend(steps)
    return config


def classifier(name: str, *, platform: str = "onnxruntime_onnx") -> mc.ModelConfig:
    return model(
        name,
        platform=platform,
        inputs=[tensor_in("pixels", mc.TYPE_FP32, [1, 8, 8])],
        outputs=[tensor_out("logits", mc.TYPE_FP32, [10])],
    )


def digits_configs() -> dict[str, mc.ModelConfig]:
    """A correct repository: models by name."""
    configs = [
        model(
            "digits_preprocess",
            backend="python",
            inputs=[tensor_in("IMAGE", mc.TYPE_STRING, [1])],
            outputs=[tensor_out("PIXELS", mc.TYPE_FP32, [1, 8, 8])],
        ),
        classifier("digits_classifier"),
        classifier("digits_classifier_trt", platform="tensorrt_plan"),
        model(
            "digits_postprocess",
            backend="python",
            inputs=[tensor_in("LOGITS", mc.TYPE_FP32, [10])],
            outputs=[
                tensor_out("LABELS", mc.TYPE_STRING, [3]),
                tensor_out("SCORES", mc.TYPE_FP32, [3]),
            ],
        ),
        ensemble(
            "digits",
            inputs=[tensor_in("IMAGE", mc.TYPE_STRING, [1])],
            outputs=[
                tensor_out("LABELS", mc.TYPE_STRING, [3]),
                tensor_out("SCORES", mc.TYPE_FP32, [3]),
            ],
            steps=[
                step("digits_preprocess", {"IMAGE": "IMAGE"}, {"PIXELS": "PIXELS"}),
                step("digits_classifier", {"pixels": "PIXELS"}, {"logits": "LOGITS"}),
                step(
                    "digits_postprocess",
                    {"LOGITS": "LOGITS"},
                    {"LABELS": "LABELS", "SCORES": "SCORES"},
                ),
            ],
        ),
    ]
    return {c.name: c for c in configs}


def write_model_files(config: mc.ModelConfig, version_dir: Path) -> None:
    """Put the file the model's platform/backend loads into `version_dir`."""
    version_dir.mkdir(parents=True, exist_ok=True)
    if config.platform == "onnxruntime_onnx":
        make_image_model(version_dir / "model.onnx", channels=1, size=8, classes=10)
    elif config.platform == "tensorrt_plan":
        # Not a real engine (no TensorRT here); the linter checks presence and provenance only.
        (version_dir / "model.plan").write_bytes(b"not a real TensorRT engine")
    elif config.backend == "python":
        (version_dir / "model.py").write_text(PYTHON_MODEL, encoding="utf-8")


def write_model(
    root: Path, name: str, config: mc.ModelConfig, *, versions: Sequence[str] = ("1",)
) -> Path:
    directory = root / name
    write_config(config, directory / CONFIG_NAME)
    for version in versions:
        write_model_files(config, directory / version)
    return directory


def write_repository(root: Path, configs: Mapping[str, mc.ModelConfig]) -> Path:
    """Write every config to `root/<name>/config.pbtxt` with a `1/` holding its model file."""
    for name, config in configs.items():
        write_model(root, name, config)
    return root


def write_plan_manifest(version_dir: Path, *, tensorrt: str, version_compatible: bool = False,
                        server_flags: tuple[str, ...] = ()) -> Path:
    """A build manifest beside `version_dir/model.plan`, recording the TensorRT version."""
    plan = version_dir / "model.plan"
    manifest = Manifest(
        artifact=plan.name,
        kind=ArtifactKind.TENSORRT_PLAN,
        artifact_sha256=sha256_file(plan),
        source_onnx="digits_cnn.onnx",
        source_onnx_sha256="0" * 64,
        spec_sha256="0" * 64,
        precision="fp32",
        tools={"tensorrt": tensorrt, "cuda": "12.8"},
        options={"version_compatible": version_compatible},
        server_flags=server_flags,
    )
    return write_manifest(manifest, version_dir)
