"""Unit tests of tritonkit.tensorrt.plan, on a machine without TensorRT or a GPU.

Profiles, commands, flags and cache paths are tested on real tiny ONNX models. build_engine is
tested at the TensorRT/Polygraphy boundary: a stand-in `tensorrt` module provides the two enums
build_engine reads, and the three Polygraphy loaders that would call TensorRT record their
arguments (checked against the real loaders' signatures). Polygraphy's CreateConfig and Profile
are the real classes.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from tests.onnx_factories import UPSCALER_SPEC, make_classifier, make_image_model, make_upscaler
from tests.tensorrt_double import (
    clear_polygraphy_tensorrt_cache,
    double_record,
    install_tensorrt_double,
    uncovered_dynamic_dims,
)
from tritonkit.build.onnx_inspect import OnnxModelInfo, inspect_onnx
from tritonkit.errors import EngineBuildError
from tritonkit.spec import HardwareCompatibility, ModelSpec, parse_spec
from tritonkit.tensorrt.api.surface import held_surfaces, load_surface
from tritonkit.tensorrt.plan import (
    CONTAINER_BUILD_COMMAND,
    MIB,
    PlanOptions,
    TensorRTEnvironment,
    build_engine,
    parse_nvidia_smi_gpus,
    plan_options,
    probe_tensorrt,
    server_flags,
    timing_cache_path,
    trtexec_command,
)
from tritonkit.tensorrt.profiles import ShapeProfile, ShapeRange


def _model(tmp_path: Path, yaml_text: str) -> tuple[ModelSpec, OnnxModelInfo]:
    spec = parse_spec(yaml_text, tmp_path / "models.yaml")
    model = spec.models[0]
    return model, inspect_onnx(model.onnx)


@pytest.fixture
def image_onnx(tmp_path: Path) -> Path:
    """pixels[batch, 1, 8, 8] -> logits[batch, 10]."""
    return make_image_model(tmp_path / "image.onnx")


@pytest.fixture
def seq_onnx(tmp_path: Path) -> Path:
    """tokens[batch, seq] -> Identity: a symbolic non-batch axis."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["tokens"], ["out"])],
        "seq",
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", "seq"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "seq"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "seq.onnx"
    onnx.save(model, str(path))
    return path


IMAGE_SPEC = """
models:
  - name: digits
    onnx: image.onnx
    max_batch_size: 64
    tensorrt:
      opt_batch_size: 16
      extra_profiles: [{min: 1, opt: 1, max: 4}]
      workspace_mib: 512
      builder_optimization_level: 4
      version_compatible: true
      hardware_compatibility: ampere_plus
"""


# --------------------------------------------------------------------------- profiles


def test_profiles_derive_batch_from_spec_and_dims_from_onnx(tmp_path: Path, image_onnx: Path):
    model, info = _model(tmp_path, IMAGE_SPEC)
    cache = tmp_path / "cache" / "t.cache"

    options = plan_options(model, info, timing_cache=cache)

    assert options == PlanOptions(
        profiles=(
            ShapeProfile(
                shapes={
                    "pixels": ShapeRange(min=(1, 1, 8, 8), opt=(16, 1, 8, 8), max=(64, 1, 8, 8))
                }
            ),
            ShapeProfile(
                shapes={"pixels": ShapeRange(min=(1, 1, 8, 8), opt=(1, 1, 8, 8), max=(4, 1, 8, 8))}
            ),
        ),
        workspace_bytes=512 * 1024 * 1024,
        builder_optimization_level=4,
        strongly_typed=True,
        version_compatible=True,
        hardware_compatibility=HardwareCompatibility.AMPERE_PLUS,
        timing_cache=cache,
    )


def test_opt_batch_defaults_to_max_batch_size(tmp_path: Path, image_onnx: Path):
    model, info = _model(tmp_path, "models: [{name: m, onnx: image.onnx, max_batch_size: 8}]")

    options = plan_options(model, info, timing_cache=None)

    assert len(options.profiles) == 1
    assert options.profiles[0].shapes["pixels"] == ShapeRange(
        min=(1, 1, 8, 8), opt=(8, 1, 8, 8), max=(8, 1, 8, 8)
    )
    assert options.workspace_bytes == 1024 * MIB  # spec default workspace_mib
    assert options.builder_optimization_level == 3
    assert options.version_compatible is False
    assert options.hardware_compatibility is HardwareCompatibility.NONE
    assert options.timing_cache is None


def test_unbatched_model_uses_the_static_onnx_shapes(tmp_path: Path):
    make_classifier(tmp_path / "static.onnx", features=16, classes=4, batch=2)
    model, info = _model(tmp_path, "models: [{name: m, onnx: static.onnx, max_batch_size: 0}]")

    options = plan_options(model, info, timing_cache=None)

    assert options.profiles == (
        ShapeProfile(shapes={"x": ShapeRange(min=(2, 16), opt=(2, 16), max=(2, 16))}),
    )


def test_symbolic_non_batch_dim_cannot_be_profiled(tmp_path: Path, seq_onnx: Path):
    model, info = _model(tmp_path, "models: [{name: m, onnx: seq.onnx, max_batch_size: 8}]")

    with pytest.raises(EngineBuildError) as caught:
        plan_options(model, info, timing_cache=None)

    message = str(caught.value)
    assert "input 'tokens' axis 1 ('seq') is dynamic and no pipeline step bounds it" in message
    assert "tensorrt.dynamic_axes.seq" in message


def test_unbatched_model_with_a_symbolic_dim_cannot_be_profiled(tmp_path: Path, seq_onnx: Path):
    model, info = _model(tmp_path, "models: [{name: m, onnx: seq.onnx, max_batch_size: 0}]")

    with pytest.raises(EngineBuildError, match=r"input 'tokens' axis 0 \('batch'\) is dynamic"):
        plan_options(model, info, timing_cache=None)


def test_batched_spec_needs_a_dynamic_leading_axis(tmp_path: Path):
    make_classifier(tmp_path / "static.onnx", batch=1)
    model, info = _model(tmp_path, "models: [{name: m, onnx: static.onnx, max_batch_size: 4}]")

    with pytest.raises(EngineBuildError, match=r"input 'x' has no dynamic leading \(batch\) axis"):
        plan_options(model, info, timing_cache=None)


def test_extra_profiles_need_a_batch_axis(tmp_path: Path):
    make_classifier(tmp_path / "static.onnx", batch=1)
    model, info = _model(
        tmp_path,
        """
models:
  - {name: m, onnx: static.onnx, max_batch_size: 0,
     tensorrt: {extra_profiles: [{min: 1, opt: 1, max: 1}]}}
""",
    )

    with pytest.raises(EngineBuildError, match="extra_profiles need a batch axis"):
        plan_options(model, info, timing_cache=None)


def test_as_dict_is_json_for_the_manifest(tmp_path: Path, image_onnx: Path):
    model, info = _model(tmp_path, IMAGE_SPEC)
    options = plan_options(model, info, timing_cache=Path("/cache/t.cache"))

    data = json.loads(json.dumps(options.as_dict()))

    assert data == {
        "profiles": [
            {"pixels": {"min": [1, 1, 8, 8], "opt": [16, 1, 8, 8], "max": [64, 1, 8, 8]}},
            {"pixels": {"min": [1, 1, 8, 8], "opt": [1, 1, 8, 8], "max": [4, 1, 8, 8]}},
        ],
        "workspace_bytes": 536870912,
        "builder_optimization_level": 4,
        "strongly_typed": True,
        "tf32": False,
        "version_compatible": True,
        "hardware_compatibility": "ampere_plus",
        "timing_cache": "t.cache",  # the name only: no path of the build machine
    }


# --------------------------------------------------------------------------- commands and flags


def test_trtexec_command_for_one_profile(tmp_path: Path, image_onnx: Path):
    model, info = _model(
        tmp_path,
        """
models:
  - {name: m, onnx: image.onnx, max_batch_size: 32, tensorrt: {opt_batch_size: 8}}
""",
    )
    options = plan_options(model, info, timing_cache=Path("/c/timing cache.bin"))

    command = trtexec_command(Path("/m/image.onnx"), Path("/repo/m/1/model.plan"), options)

    assert command == (
        "trtexec --onnx=/m/image.onnx --saveEngine=/repo/m/1/model.plan --skipInference "
        "--stronglyTyped --noTF32 --minShapes=pixels:1x1x8x8 --optShapes=pixels:8x1x8x8 "
        "--maxShapes=pixels:32x1x8x8 --memPoolSize=workspace:1024M "
        "--builderOptimizationLevel=3 '--timingCacheFile=/c/timing cache.bin'"
    )


def test_trtexec_command_for_several_profiles_and_compatibility(tmp_path: Path, image_onnx: Path):
    model, info = _model(tmp_path, IMAGE_SPEC)
    options = plan_options(model, info, timing_cache=None)

    command = trtexec_command(Path("a.onnx"), Path("model.plan"), options)

    assert command == (
        "trtexec --onnx=a.onnx --saveEngine=model.plan --skipInference --stronglyTyped "
        "--noTF32 --profile=0 --minShapes=pixels:1x1x8x8 --optShapes=pixels:16x1x8x8 "
        "--maxShapes=pixels:64x1x8x8 --profile=1 --minShapes=pixels:1x1x8x8 "
        "--optShapes=pixels:1x1x8x8 --maxShapes=pixels:4x1x8x8 "
        "--memPoolSize=workspace:512M --builderOptimizationLevel=4 --versionCompatible "
        "--hardwareCompatibilityLevel=ampere+"
    )


def test_trtexec_command_lists_every_input(tmp_path: Path):
    options = PlanOptions(
        profiles=(
            ShapeProfile(
                shapes={
                    "ids": ShapeRange(min=(1, 7), opt=(2, 7), max=(4, 7)),
                    "mask": ShapeRange(min=(1, 7), opt=(2, 7), max=(4, 7)),
                }
            ),
        ),
        workspace_bytes=3 * MIB + 1,
        builder_optimization_level=0,
        hardware_compatibility=HardwareCompatibility.SAME_COMPUTE_CAPABILITY,
    )

    command = trtexec_command(Path("a.onnx"), Path("b.plan"), options)

    assert "--minShapes=ids:1x7,mask:1x7 --optShapes=ids:2x7,mask:2x7" in command
    assert "--maxShapes=ids:4x7,mask:4x7" in command
    assert "--memPoolSize=workspace:3145729B" in command
    assert command.endswith("--hardwareCompatibilityLevel=sameComputeCapability")


def test_trtexec_command_for_a_static_model_has_no_shape_flags(tmp_path: Path):
    make_classifier(tmp_path / "static.onnx", batch=2)
    model, info = _model(tmp_path, "models: [{name: m, onnx: static.onnx, max_batch_size: 0}]")

    command = trtexec_command(
        Path("s.onnx"), Path("s.plan"), plan_options(model, info, timing_cache=None)
    )

    assert command == (
        "trtexec --onnx=s.onnx --saveEngine=s.plan --skipInference "
        "--stronglyTyped --noTF32 --memPoolSize=workspace:1024M "
        "--builderOptimizationLevel=3"
    )


def test_server_flags_for_version_compatible_plans(tmp_path: Path, image_onnx: Path):
    model, info = _model(tmp_path, IMAGE_SPEC)
    compatible = plan_options(model, info, timing_cache=None)
    plain, _ = _model(tmp_path, "models: [{name: m, onnx: image.onnx, max_batch_size: 8}]")

    assert server_flags(compatible) == ("--backend-config=tensorrt,version-compatible=true",)
    assert server_flags(plan_options(plain, info, timing_cache=None)) == ()


def test_timing_cache_path_is_keyed_by_tensorrt_version_and_gpu(tmp_path: Path):
    h200 = TensorRTEnvironment(
        tensorrt_version="10.8.0.43",
        cuda_version="12.8",
        gpu_name="NVIDIA H200",
        compute_capability="9.0",
    )
    a100 = TensorRTEnvironment(
        tensorrt_version="10.8.0.43",
        cuda_version="12.8",
        gpu_name="NVIDIA A100-SXM4-80GB",
        compute_capability="8.0",
    )
    newer = TensorRTEnvironment(
        tensorrt_version="10.9.0.34",
        cuda_version="12.8",
        gpu_name="NVIDIA H200",
        compute_capability="9.0",
    )

    assert timing_cache_path(tmp_path, h200) == (
        tmp_path / "timing_trt10.8.0.43_NVIDIA_H200_cc9.0.cache"
    )
    assert timing_cache_path(tmp_path, a100).name == (
        "timing_trt10.8.0.43_NVIDIA_A100-SXM4-80GB_cc8.0.cache"
    )
    assert len({timing_cache_path(tmp_path, e) for e in (h200, a100, newer)}) == 3
    odd = TensorRTEnvironment(
        tensorrt_version="10.8",
        cuda_version=None,
        gpu_name="GPU ../../x (y)",
        compute_capability="9.0",
    )
    assert timing_cache_path(tmp_path, odd).parent == tmp_path
    assert "/" not in timing_cache_path(tmp_path, odd).name


# --------------------------------------------------------------------------- environment


def test_parse_nvidia_smi_gpus():
    gpus = parse_nvidia_smi_gpus("NVIDIA H200, 9.0\nNVIDIA A10, Inc., 8.6\n\n")

    assert [(g.name, g.compute_capability) for g in gpus] == [
        ("NVIDIA H200", "9.0"),
        ("NVIDIA A10, Inc.", "8.6"),
    ]
    with pytest.raises(EngineBuildError, match="cannot read the GPU"):
        parse_nvidia_smi_gpus("No devices were found")


def _tensorrt_importable() -> bool:
    try:
        importlib.import_module("tensorrt")
    except ImportError:
        return False
    return True


@pytest.mark.skipif(
    _tensorrt_importable(),
    reason="tensorrt is importable here; this test checks the message shown where it is missing",
)
def test_probe_tensorrt_explains_how_to_build_without_tensorrt():
    with pytest.raises(EngineBuildError) as caught:
        probe_tensorrt()

    message = str(caught.value)
    assert "TensorRT Python package cannot be imported" in message
    assert "No module named 'tensorrt'" in message
    assert CONTAINER_BUILD_COMMAND in message
    assert "nvcr.io/nvidia/tensorrt:<release>-py3" in message
    assert "--target tensorrt" in message


@pytest.mark.skipif(_tensorrt_importable(), reason="tensorrt is importable here")
def test_build_engine_without_tensorrt_names_the_onnx_and_the_container(
    tmp_path: Path, image_onnx: Path
):
    options = PlanOptions(profiles=(), workspace_bytes=MIB, builder_optimization_level=3)

    with pytest.raises(EngineBuildError) as caught:
        build_engine(image_onnx, tmp_path / "m" / "1" / "model.plan", options)

    assert str(image_onnx) in str(caught.value)
    assert "nvcr.io/nvidia/tensorrt:" in str(caught.value)
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------- build (TRT boundary)
# build_engine runs Polygraphy's real loaders against the strict double of the `tensorrt` module
# of one held release (tests/tensorrt_double.py): an attribute that release lacks fails.


@pytest.fixture(params=held_surfaces())
def trt(request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    module = install_tensorrt_double(monkeypatch, load_surface(request.param))
    yield module
    clear_polygraphy_tensorrt_cache()


def test_build_engine_passes_the_options_to_tensorrt(
    tmp_path: Path, image_onnx: Path, trt: types.ModuleType
):
    model, info = _model(tmp_path, IMAGE_SPEC)
    cache = tmp_path / "cache" / "timing.cache"
    options = plan_options(model, info, timing_cache=cache)
    plan = tmp_path / "repo" / "digits" / "1" / "model.plan"

    assert build_engine(image_onnx, plan, options) == plan

    (build,) = double_record(trt).builds
    assert build.network.creation_flags == {"STRONGLY_TYPED"}
    assert build.network.onnx_path == image_onnx
    config = build.config
    assert config.profiles == [
        {"pixels": ((1, 1, 8, 8), (16, 1, 8, 8), (64, 1, 8, 8))},
        {"pixels": ((1, 1, 8, 8), (1, 1, 8, 8), (4, 1, 8, 8))},
    ]
    assert uncovered_dynamic_dims(build.network, config) == []
    assert config.memory_pool_limits == {"WORKSPACE": 512 * MIB}
    assert config.builder_optimization_level == 4
    assert "VERSION_COMPATIBLE" in config.flags
    assert config.hardware_compatibility_level == "AMPERE_PLUS"
    assert "TF32" not in config.flags
    assert config.precision_flags() == set()  # precision comes from the ONNX
    # the serialized plan is written as built, atomically, with nothing left beside it
    assert plan.read_bytes() == build.plan
    assert sorted(p.name for p in plan.parent.iterdir()) == ["model.plan"]
    assert cache.is_file()  # the timing cache is saved after the build


def test_build_engine_without_compatibility_or_cache(
    tmp_path: Path, image_onnx: Path, trt: types.ModuleType
):
    model, info = _model(tmp_path, "models: [{name: m, onnx: image.onnx, max_batch_size: 4}]")

    build_engine(image_onnx, tmp_path / "model.plan", plan_options(model, info, timing_cache=None))

    (build,) = double_record(trt).builds
    assert build.config.hardware_compatibility_level is None  # TensorRT's default: this GPU
    assert "VERSION_COMPATIBLE" not in build.config.flags
    assert build.config.memory_pool_limits == {"WORKSPACE": 1024 * MIB}


def test_build_engine_profiles_height_and_width_besides_batch(
    tmp_path: Path, trt: types.ModuleType
):
    up_onnx = make_upscaler(tmp_path / "up.onnx")
    model, info = _model(tmp_path, UPSCALER_SPEC)

    build_engine(up_onnx, tmp_path / "up.plan", plan_options(model, info, timing_cache=None))

    (build,) = double_record(trt).builds
    assert build.config.profiles == [
        {"low_res": ((1, 1, 8, 8), (1, 1, 32, 32), (4, 1, 64, 64))},
    ]
    assert uncovered_dynamic_dims(build.network, build.config) == []


def test_same_compute_capability_resolves_only_where_tensorrt_has_it(
    tmp_path: Path, image_onnx: Path, trt: types.ModuleType
):
    model, info = _model(
        tmp_path,
        """
models:
  - {name: m, onnx: image.onnx, max_batch_size: 4,
     tensorrt: {hardware_compatibility: same_compute_capability}}
""",
    )
    options = plan_options(model, info, timing_cache=None)
    plan = tmp_path / "model.plan"

    if not hasattr(trt.HardwareCompatibilityLevel, "SAME_COMPUTE_CAPABILITY"):  # 10.8
        with pytest.raises(EngineBuildError) as caught:
            build_engine(image_onnx, plan, options)
        assert (f"HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY, which TensorRT "
                f"{trt.__version__} lacks") in str(caught.value)
        assert not plan.exists()
        return
    build_engine(image_onnx, plan, options)
    (build,) = double_record(trt).builds
    assert build.config.hardware_compatibility_level == "SAME_COMPUTE_CAPABILITY"


def test_failed_build_keeps_the_previous_plan_and_leaves_no_temp_file(
    tmp_path: Path, image_onnx: Path, trt: types.ModuleType
):
    model, info = _model(tmp_path, "models: [{name: m, onnx: image.onnx, max_batch_size: 4}]")
    good = plan_options(model, info, timing_cache=None)
    # a profile of the wrong rank for `pixels`: TensorRT refuses it
    wrong = ShapeRange(min=(1, 64), opt=(1, 64), max=(4, 64))
    broken = PlanOptions(profiles=(ShapeProfile(shapes={"pixels": wrong}),),
                         workspace_bytes=good.workspace_bytes, builder_optimization_level=3)
    plan = tmp_path / "repo" / "model.plan"
    plan.parent.mkdir()
    plan.write_bytes(b"previous plan")

    with pytest.raises(EngineBuildError) as caught:
        build_engine(image_onnx, plan, broken)

    assert str(image_onnx) in str(caught.value)
    assert "input 'pixels' has rank 4" in str(caught.value)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert plan.read_bytes() == b"previous plan"
    assert sorted(p.name for p in plan.parent.iterdir()) == ["model.plan"]


# --------------------------------------------------------------------------- which GPU


def _fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpus: list[str]) -> Path:
    """An nvidia-smi on PATH that lists `gpus` in PCI order and honours --id=<index|uuid>."""
    log = tmp_path / "nvidia-smi.args"
    script = tmp_path / "bin" / "nvidia-smi"
    script.parent.mkdir()
    rows = "\n".join(f"    {g!r}," for g in gpus)
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        f"rows = [\n{rows}\n]\n"
        "ids = [a.split('=', 1)[1] for a in sys.argv[1:] if a.startswith('--id=')]\n"
        "if ids:\n"
        "    key = ids[0]\n"
        "    rows = [rows[int(key)]] if key.isdigit() else [rows[-1]]\n"
        "print('\\n'.join(rows))\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:{os.environ['PATH']}")
    return log


def test_a_gpu_index_is_read_in_pci_bus_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from tritonkit.tensorrt.plan import detect_gpu

    log = _fake_nvidia_smi(tmp_path, monkeypatch, ["NVIDIA A10, 8.6", "NVIDIA H200, 9.0"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")

    assert detect_gpu().name == "NVIDIA H200"
    assert "--id=1" in log.read_text()


def test_a_gpu_index_in_cuda_fastest_first_order_is_refused_on_mixed_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from tritonkit.tensorrt.plan import detect_gpu

    _fake_nvidia_smi(tmp_path, monkeypatch, ["NVIDIA A10, 8.6", "NVIDIA H200, 9.0"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)

    with pytest.raises(EngineBuildError, match="CUDA_DEVICE_ORDER=PCI_BUS_ID"):
        detect_gpu()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1234abcd-0000")  # a UUID is exact
    assert detect_gpu().name == "NVIDIA H200"


def test_probe_sets_pci_bus_order_before_cuda_starts(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "restored after the test")
    monkeypatch.delenv("CUDA_DEVICE_ORDER")
    with pytest.raises(EngineBuildError):
        probe_tensorrt()  # no TensorRT or GPU here; the order is set first all the same
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
