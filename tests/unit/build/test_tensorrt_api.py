"""The TensorRT API surfaces per release, the trtexec check, and the strict double built on them.

The facts below were read from NVIDIA's sources in shared/third_party/tensorrt-api (pyCore.cpp,
sampleOptions.cpp of each release); where the folder is present they are re-read from it.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from polygraphy.backend.common import save_bytes
from polygraphy.backend.trt import (
    CreateConfig,
    Profile,
    engine_bytes_from_network,
    network_from_onnx_path,
)
from polygraphy.exception import PolygraphyException

from tests.onnx_factories import make_image_model, make_sequence_encoder
from tests.tensorrt_double import (
    PLAN_MAGIC,
    clear_polygraphy_tensorrt_cache,
    double_record,
    install_tensorrt_double,
    make_tensorrt_module,
    uncovered_dynamic_dims,
)
from tritonkit.build.onnx_inspect import inspect_onnx
from tritonkit.errors import TensorRTApiError, ToolkitError
from tritonkit.tensorrt.api import (
    TensorRTSurface,
    check_trtexec_command,
    held_surfaces,
    load_surface,
    surface_for_tensorrt,
)
from tritonkit.tensorrt.api.__main__ import main as cli_main
from tritonkit.tensorrt.api.cpp_text import read_source
from tritonkit.tensorrt.api.extract import BINDING_DEFINES, extract_surface
from tritonkit.tensorrt.api.pybind import read_bindings
from tritonkit.tensorrt.api.trtexec_options import read_trtexec_flags

API_ROOT = Path(__file__).parents[3].parent / "shared" / "third_party" / "tensorrt-api"
TAGS = ("10.8.0", "10.16", "11.1")
MIB = 1 << 20

needs_sources = pytest.mark.skipif(
    not API_ROOT.is_dir(),
    reason=f"NVIDIA's TensorRT sources are not at {API_ROOT} (shared/third_party/tensorrt-api "
           "beside the clone); the committed data is checked against them where they are",
)


def _source(tag: str, relative: str) -> str:
    return (API_ROOT / f"v{tag}" / relative).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- (a) data = sources


def test_the_held_surfaces_are_the_three_releases() -> None:
    assert held_surfaces() == TAGS
    assert [load_surface(t).version for t in TAGS] == ["10.8.0.43", "10.16.0.72", "11.1.0.106"]


@needs_sources
def test_every_release_folder_is_held() -> None:
    folders = sorted(p.name.removeprefix("v") for p in API_ROOT.iterdir() if p.is_dir())
    assert sorted(held_surfaces()) == folders


@needs_sources
@pytest.mark.parametrize("tag", TAGS)
def test_committed_data_equals_a_fresh_extraction(tag: str) -> None:
    fresh = extract_surface(API_ROOT / f"v{tag}")
    assert fresh == load_surface(tag)
    assert fresh.to_json() == load_surface(tag).to_json()  # byte-identical file content


@needs_sources
def test_the_cli_writes_the_committed_files(tmp_path: Path) -> None:
    assert cli_main(["extract", "--api-root", str(API_ROOT), "--out", str(tmp_path)]) == 0
    data = Path(__file__).parents[3] / "src" / "tritonkit" / "tensorrt" / "api" / "data"
    for written in sorted(tmp_path.iterdir()):
        assert written.read_text() == (data / written.name).read_text(), written.name


def test_the_cli_fails_with_the_error_type(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    absent = str(tmp_path / "absent")
    assert cli_main(["extract", "--api-root", absent, "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("TensorRTApiError: ")


def test_json_round_trip_is_stable() -> None:
    for tag in TAGS:
        surface = load_surface(tag)
        text = surface.to_json()
        assert TensorRTSurface.from_json(text) == surface
        assert TensorRTSurface.from_json(text).to_json() == text


@pytest.mark.parametrize(("version", "tag"), [
    ("10.8.0.43", "10.8.0"), ("10.8", "10.8.0"), ("10.16.1.11", "10.16"), ("11.1.0.106", "11.1"),
])
def test_a_full_version_maps_to_the_surface_of_its_major_minor(version: str, tag: str) -> None:
    assert surface_for_tensorrt(version) is load_surface(tag)


@pytest.mark.parametrize("version", ["10.7.0.23", "11.0.0.1", "12.1", "ten"])
def test_an_unheld_version_names_the_held_ones(version: str) -> None:
    with pytest.raises(TensorRTApiError) as caught:
        surface_for_tensorrt(version)
    assert isinstance(caught.value, ToolkitError)
    if version != "ten":
        assert "10.8.0 (TensorRT 10.8.0.43)" in str(caught.value) and "11.1" in str(caught.value)


# --------------------------------------------------------------------------- the readers

BINDINGS = r"""
// a comment naming py::class_<Fake>(m, "Fake") is not a binding
py::class_<Base>(m, "Base", "doc ( with a paren", py::module_local())
    .def("base_method", &Base::f) /* .def("commented_out", &Base::c) */
    .def_property_readonly("ro",
        [](Base& self) { return self.x(")"); });
py::class_<Derived, Base, std::unique_ptr<Derived, py::nodelete>>(
    m, "Derived")
    .def(py::init<>())
    .def(
        "multi_line",
        &Derived::g)
#if EXPORT_ALL_BINDINGS
    .def("exported", &Derived::e)
#else
    .def("lean_only", &Derived::l)
#endif
#if ENABLE_INETWORK_SERIALIZE
    .def("serialize", &Derived::s)
#endif
    ;
py::class_<ILogger, PyLogger> loggerBinding{m, "ILogger"};
py::enum_<ILogger::Severity>(loggerBinding, "Severity", py::arithmetic())
    .value("ERROR", ILogger::Severity::kERROR)
    .value("INFO", ILogger::Severity::kINFO)
    .export_values();
loggerBinding.def(py::init<>()).def("log", &ILogger::log, R"doc(a raw ")" string)doc");
py::enum_<DataType>(m, "DataType").value("FLOAT", DataType::kFLOAT).value("HALF", DataType::kHALF);
m.attr("float32") = DataType::kFLOAT;
m.def("free_function", &f);
"""


def test_bindings_are_read_however_their_chains_are_split() -> None:
    names = read_bindings([("x.cpp", read_source(BINDINGS, BINDING_DEFINES))])
    assert names.classes == {
        "Base": ("base_method", "ro"),
        "Derived": ("__init__", "base_method", "exported", "multi_line", "ro"),
        "ILogger": ("ERROR", "INFO", "Severity", "__init__", "log"),
    }
    assert names.enums == {"DataType": ("FLOAT", "HALF"), "ILogger.Severity": ("ERROR", "INFO")}
    assert names.functions == ("free_function",)
    assert names.module_attributes == {"float32": "DataType.FLOAT"}


SAMPLE_OPTIONS_H = """
class BuildOptions : public Options
{
public:
    bool fp16{false};
    bool tf32{true};
    std::string engine;
    int32_t level{3};
    Mode mode{Mode::kFAST};
    void parse(Arguments& arguments) override;
};
class AllOptions : public Options
{
public:
    BuildOptions build;
    bool helps{false};
    void parse(Arguments& arguments) override;
};
"""
SAMPLE_OPTIONS_CPP = r"""
template <>
Mode stringToValue<Mode>(std::string const& option)
{
    std::unordered_map<std::string, Mode> const table{{"fast", Mode::kFAST}, {"slow", Mode::kSLOW}};
    auto found = table.find(option);
    if (found == table.end()) { throw std::invalid_argument("Unknown mode: " + option); }
    return found->second;
}
void getList(Arguments& arguments, char const* argument, std::vector<std::string>& out)
{
    std::string list;
    getAndDelOption(arguments, argument, list);
}
void BuildOptions::parse(Arguments& arguments)
{
    getAndDelOption(arguments, "--fp16", fp16);
    getAndDelNegOption(arguments, "--noTF32", tf32);
    getAndDelOption(arguments, "--saveEngine", engine);
    getAndDelOption(arguments, "--level", level);
    getAndDelOption(arguments, "--mode", mode);
    std::string hw;
    getAndDelOption(arguments, "--hw", hw);
    if (hw == "none" || hw.empty()) { level = 1; }
    else if (samplesCommon::toLower(hw) == "samecc") { level = 2; }
    else { throw std::invalid_argument("Unknown --hw: " + hw); }
    std::string loose;
    getAndDelOption(arguments,
        "--loose", loose);
    if (loose == "x") { level = 4; }  // no throw: anything else is accepted too
    getList(arguments, "--list", values);
    auto getFormats = [&arguments](std::vector<int>& v, char const* argument) {
        std::string s;
        getAndDelOption(arguments, argument, s);
    };
    getFormats(formats, "--formats");
#if TRT_WINML
    getAndDelOption(arguments, "--windowsOnly", fp16);
#endif
}
bool parseHelp(Arguments& arguments)
{
    bool help{false};
    getAndDelOption(arguments, "--help", help);
    return help;
}
void AllOptions::parse(Arguments& arguments)
{
    build.parse(arguments);
    helps = parseHelp(arguments);
}
void SafeBuilderOptions::parse(Arguments& arguments)
{
    getAndDelOption(arguments, "--notTrtexec", x);
}
"""


def test_trtexec_flags_are_read_from_what_all_options_parse_reaches() -> None:
    flags = read_trtexec_flags(read_source(SAMPLE_OPTIONS_CPP, {}),
                               read_source(SAMPLE_OPTIONS_H, {}), "sampleOptions.cpp")
    described = {name: (f.takes_value, f.values, f.values_any_case) for name, f in flags.items()}
    assert described == {
        "--fp16": (False, None, ()),
        "--noTF32": (False, None, ()),
        "--saveEngine": (True, None, ()),
        "--level": (True, None, ()),
        "--mode": (True, ("fast", "slow"), ()),
        "--hw": (True, ("none", "samecc"), ("samecc",)),
        "--loose": (True, None, ()),
        "--list": (True, None, ()),
        "--formats": (True, None, ()),
        "--help": (False, None, ()),
    }


@pytest.mark.parametrize(("condition", "active"), [
    ("#if EXPORT_ALL_BINDINGS", True), ("#if !EXPORT_ALL_BINDINGS", False),
    ("#if UNDEFINED_MACRO", False), ("#ifndef UNDEFINED_MACRO", True),
    ("#if defined(EXPORT_ALL_BINDINGS) && (2 > 1)", True), ("#ifdef _WIN32", False),
])
def test_preprocessor_branches(condition: str, active: bool) -> None:
    text = f"{condition}\nyes\n#else\nno\n#endif\n"
    kept = read_source(text, BINDING_DEFINES).split()
    assert kept == (["yes"] if active else ["no"])


# --------------------------------------------------------------------------- (b) facts

# (tag, enum, member, present) as in each release's python/src/infer/pyCore.cpp
ENUM_FACTS = [
    ("10.8.0", "HardwareCompatibilityLevel", "SAME_COMPUTE_CAPABILITY", False),
    ("10.16", "HardwareCompatibilityLevel", "SAME_COMPUTE_CAPABILITY", True),
    ("11.1", "HardwareCompatibilityLevel", "SAME_COMPUTE_CAPABILITY", True),
    *[(t, "HardwareCompatibilityLevel", "AMPERE_PLUS", True) for t in TAGS],
    *[(t, "BuilderFlag", f, t != "11.1") for t in TAGS
      for f in ("FP16", "BF16", "INT8", "FP8", "INT4", "FP4")],
    *[(t, "BuilderFlag", f, True) for t in TAGS for f in ("TF32", "VERSION_COMPATIBLE")],
    *[(t, "NetworkDefinitionCreationFlag", "STRONGLY_TYPED", True) for t in TAGS],
    *[(t, "NetworkDefinitionCreationFlag", "EXPLICIT_BATCH", t != "11.1") for t in TAGS],
    *[(t, "MemoryPoolType", "WORKSPACE", True) for t in TAGS],
]


@pytest.mark.parametrize(("tag", "enum", "member", "present"), ENUM_FACTS)
def test_enum_facts(tag: str, enum: str, member: str, present: bool) -> None:
    assert load_surface(tag).has_enum_member(enum, member) is present
    if API_ROOT.is_dir():  # re-read the binding itself, independently of the extractor
        text = _source(tag, "python/src/infer/pyCore.cpp")
        block = re.search(rf'py::enum_<{enum}>\s*\(.*?;', text, re.DOTALL)
        assert block is not None
        assert (f'.value("{member}"' in block.group(0)) is present


# (tag, flag, present) as in each release's samples/common/sampleOptions.cpp BuildOptions::parse
FLAG_FACTS = [
    *[(t, f, t != "11.1") for t in TAGS for f in ("--fp16", "--int8", "--bf16", "--fp8", "--best")],
    *[(t, f, True) for t in TAGS for f in ("--stronglyTyped", "--versionCompatible", "--noTF32",
                                           "--profile", "--minShapes", "--optShapes",
                                           "--maxShapes", "--memPoolSize",
                                           "--builderOptimizationLevel",
                                           "--hardwareCompatibilityLevel", "--saveEngine")],
]


@pytest.mark.parametrize(("tag", "flag", "present"), FLAG_FACTS)
def test_trtexec_flag_facts(tag: str, flag: str, present: bool) -> None:
    assert load_surface(tag).has_trtexec_flag(flag) is present
    if API_ROOT.is_dir():
        text = _source(tag, "samples/common/sampleOptions.cpp")
        body = text[text.index("void BuildOptions::parse"):text.index("void SystemOptions::parse")]
        assert (f'"{flag}"' in body) is present


def test_switches_and_values() -> None:
    for tag in TAGS:
        flags = load_surface(tag).trtexec_flags
        for switch in ("--stronglyTyped", "--versionCompatible", "--noTF32", "--vc"):
            assert not flags[switch].takes_value, (tag, switch)
        for valued in ("--memPoolSize", "--profile", "--minShapes", "--builderOptimizationLevel",
                       "--saveEngine", "--onnx"):
            assert flags[valued].takes_value, (tag, valued)
        assert flags["--memPoolSize"].values == (
            "dlaGlobalDRAM", "dlaLocalDRAM", "dlaSRAM", "tacticSharedMem", "workspace")
        assert flags["--builderOptimizationLevel"].values is None  # an int, not enumerated
    level = {t: load_surface(t).trtexec_flags["--hardwareCompatibilityLevel"] for t in TAGS}
    assert level["10.8.0"].values == ("ampere+", "none")
    assert level["10.16"].values == level["11.1"].values == (
        "ampere+", "none", "samecomputecapability")
    assert level["11.1"].accepts("sameComputeCapability")  # compared after toLower
    assert not level["11.1"].accepts("None")  # "none" is compared as written
    assert not level["10.8.0"].accepts("sameComputeCapability")


def test_other_release_differences() -> None:
    s108, s1016, s111 = (load_surface(t) for t in TAGS)
    assert s108.has_member("IBuilderConfig", "int8_calibrator")
    assert not s111.has_member("IBuilderConfig", "int8_calibrator")
    assert "QuantizationFlag" in s1016.enums and "QuantizationFlag" not in s111.enums
    assert s108.has_member("ILayer", "precision_is_set")
    assert not s111.has_member("ILayer", "precision_is_set")
    assert s111.enums["TacticSource"] == ("EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS")
    for surface in (s108, s1016, s111):
        assert surface.has_member("IBuilderConfig", "hardware_compatibility_level")
        assert surface.has_member("Logger", "WARNING")  # ILogger.Severity, exported, inherited
        assert surface.module_attributes["float32"] == "DataType.FLOAT"
        assert surface.functions == ()  # m.def lives in files not held (pyPlugin.cpp)


@needs_sources
def test_size_units_of_the_trtexec_check_match_the_sources() -> None:
    for tag in TAGS:
        text = _source(tag, "samples/common/sampleOptions.cpp")
        units = re.search(r"kUNIT_MULTIPLIERS\{(.*?)\};", text, re.DOTALL)
        assert units is not None
        assert re.findall(r"\{'(\w)'", units.group(1)) == ["B", "K", "M", "G"]


# --------------------------------------------------------------------------- (c) strict double


@pytest.fixture(params=TAGS)
def trt(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[types.ModuleType]:
    module = install_tensorrt_double(monkeypatch, load_surface(request.param))
    yield module
    clear_polygraphy_tensorrt_cache()


@pytest.mark.parametrize("tag", TAGS)
def test_the_double_has_exactly_the_surface(tag: str) -> None:
    surface = load_surface(tag)
    trt = make_tensorrt_module(surface)
    assert trt.__version__ == surface.version
    for name, members in surface.enums.items():
        enum_type = trt
        for part in name.split("."):
            enum_type = getattr(enum_type, part)
        assert tuple(sorted(enum_type.__members__)) == members, name
    for name in surface.classes:
        assert isinstance(getattr(trt, name), type), name
    assert trt.float32 is trt.DataType.FLOAT
    assert trt.Logger.WARNING is trt.ILogger.Severity.WARNING


def test_unknown_attributes_fail(trt: types.ModuleType) -> None:
    surface = surface_for_tensorrt(trt.__version__)
    builder = trt.Builder(trt.Logger())
    config = builder.create_builder_config()
    network = builder.create_network(0)
    for obj in (builder, config, network, builder.create_optimization_profile(), trt.Logger()):
        with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
            _ = obj.no_such_thing
        with pytest.raises(AttributeError):
            obj.no_such_thing = 1
    if not surface.has_enum_member("HardwareCompatibilityLevel", "SAME_COMPUTE_CAPABILITY"):
        with pytest.raises(AttributeError):
            _ = trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY
    if not surface.has_enum_member("BuilderFlag", "FP16"):
        with pytest.raises(AttributeError):
            _ = trt.BuilderFlag.FP16
    if not surface.has_member("IBuilderConfig", "int8_calibrator"):
        with pytest.raises(AttributeError):
            _ = config.int8_calibrator
        with pytest.raises(AttributeError):
            config.int8_calibrator = None
        assert not hasattr(config, "int8_calibrator")
    with pytest.raises(AttributeError):  # read-only property, as in pybind
        config.num_optimization_profiles = 3
    with pytest.raises(NotImplementedError, match="get_plugin_registry"):
        builder.get_plugin_registry()  # bound by TensorRT, not implemented by the double
    with pytest.raises(TypeError, match="No constructor"):
        trt.IBuilderConfig()
    with pytest.raises(TypeError):
        config.set_flag(trt.MemoryPoolType.WORKSPACE)  # wrong enum type, as pybind refuses
    other = make_tensorrt_module(load_surface("11.1" if trt.__version__ < "11" else "10.8.0"))
    with pytest.raises(TypeError):
        config.set_flag(other.BuilderFlag.TF32)  # another release's enum


def test_set_shape_is_validated_against_the_network(trt: types.ModuleType) -> None:
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(0)
    network.add_input("x", trt.float32, (-1, 3, 8))
    profile = builder.create_optimization_profile()
    assert not profile
    with pytest.raises(RuntimeError, match="rank"):
        profile.set_shape("x", (1, 3), (2, 3), (4, 3))
    with pytest.raises(RuntimeError, match="fixed at 3"):
        profile.set_shape("x", (1, 4, 8), (2, 4, 8), (4, 4, 8))
    with pytest.raises(RuntimeError, match="inconsistent"):
        profile.set_shape("x", (4, 3, 8), (2, 3, 8), (8, 3, 8))
    with pytest.raises(RuntimeError, match="no network input"):
        profile.set_shape("y", (1,), (1,), (1,))
    profile.set_shape("x", (1, 3, 8), (2, 3, 8), (4, 3, 8))
    assert profile
    assert profile.get_shape("x") == [(1, 3, 8), (2, 3, 8), (4, 3, 8)]


def test_polygraphy_profile_to_trt(trt: types.ModuleType) -> None:
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(0)
    network.add_input("ids", trt.int32, (-1, -1))
    network.add_input("scale", trt.float16, (1,))
    profile = Profile().add("ids", (1, 1), (4, 16), (8, 128)).add("scale", (1,), (1,), (1,))
    made = profile.to_trt(builder, network)
    assert made.get_shape("ids") == [(1, 1), (4, 16), (8, 128)]
    with pytest.raises(PolygraphyException, match="Invalid inputs"):
        Profile().add("nope", (1,), (1,), (1,)).to_trt(builder, network)


def test_a_build_without_a_profile_for_a_dynamic_input_fails(trt: types.ModuleType) -> None:
    class MyLogger(trt.ILogger):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.seen: list[tuple[object, str]] = []  # a Python subclass may add attributes

        def log(self, severity: object, msg: str) -> None:
            self.seen.append((severity, msg))

    logger = MyLogger()
    with pytest.raises(AttributeError):
        _ = logger.not_set
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    network.add_input("x", trt.float32, (-1, 3))
    assert builder.build_serialized_network(network, builder.create_builder_config()) is None
    assert double_record(trt).errors == ["buildSerializedNetwork: no optimization profile"]
    assert logger.seen == [(trt.Logger.ERROR, "buildSerializedNetwork: no optimization profile")]


# --------------------------------------------------------------------------- (d) Polygraphy


def _hardware_level(trt: types.ModuleType) -> object:
    levels = trt.HardwareCompatibilityLevel.__members__
    return levels.get("SAME_COMPUTE_CAPABILITY", levels["AMPERE_PLUS"])


def _create_config(trt: types.ModuleType, profiles: list[Profile]) -> CreateConfig:
    return CreateConfig(
        profiles=profiles,
        memory_pool_limits={trt.MemoryPoolType.WORKSPACE: 256 * MIB},
        builder_optimization_level=3,
        tf32=False,
        version_compatible=True,
        hardware_compatibility_level=_hardware_level(trt),
        preview_features=[],
    )


def test_polygraphy_create_config_runs_on_every_release(trt: types.ModuleType,
                                                        tmp_path: Path) -> None:
    onnx_path = make_image_model(tmp_path / "image.onnx")
    builder, network, _parser = network_from_onnx_path(str(onnx_path), strongly_typed=True)
    profiles = [Profile().add("pixels", (1, 1, 8, 8), (4, 1, 8, 8), (16, 1, 8, 8)),
                Profile().add("pixels", (1, 1, 8, 8), (1, 1, 8, 8), (2, 1, 8, 8))]
    config = _create_config(trt, profiles)(builder, network)

    record = double_record(trt)
    (net,) = record.networks
    assert net.creation_flags == {"STRONGLY_TYPED"}
    info = inspect_onnx(onnx_path)
    assert [(t.name, t.shape) for t in net.inputs] == [(t.name, t.dims) for t in info.inputs]
    assert [(t.name, t.shape) for t in net.outputs] == [(t.name, t.dims) for t in info.outputs]
    (rec,) = record.configs
    assert rec.precision_flags() == set()
    assert rec.flags == {"VERSION_COMPATIBLE"}  # TF32 (on by default) was cleared
    assert rec.profiles == [{"pixels": ((1, 1, 8, 8), (4, 1, 8, 8), (16, 1, 8, 8))},
                            {"pixels": ((1, 1, 8, 8), (1, 1, 8, 8), (2, 1, 8, 8))}]
    assert uncovered_dynamic_dims(net, rec) == []
    assert rec.memory_pool_limits == {"WORKSPACE": 256 * MIB}
    assert rec.builder_optimization_level == 3
    assert rec.hardware_compatibility_level == _hardware_level(trt).name  # type: ignore[attr-defined]
    assert rec.timing_cache == b""  # Polygraphy always sets an (empty) timing cache
    assert rec.preview_features == dict.fromkeys(trt.PreviewFeature.__members__, False)
    assert config.num_optimization_profiles == 2


def test_polygraphy_builds_and_saves_a_plan(trt: types.ModuleType, tmp_path: Path) -> None:
    onnx_path = make_sequence_encoder(tmp_path / "encoder.onnx")
    network = network_from_onnx_path(str(onnx_path), strongly_typed=True)
    profile = Profile().add("ids", (1, 1), (4, 16), (8, 128)).add("mask", (1, 1), (4, 16), (8, 128))
    plan = engine_bytes_from_network(network, config=_create_config(trt, [profile]))
    save_bytes(plan, str(tmp_path / "model.plan"))

    assert (tmp_path / "model.plan").read_bytes().startswith(PLAN_MAGIC)
    (build,) = double_record(trt).builds
    assert build.plan == bytes(plan)
    assert build.network.creation_flags == {"STRONGLY_TYPED"}
    assert build.config.precision_flags() == set()
    assert uncovered_dynamic_dims(build.network, build.config) == []
    assert [t.shape for t in build.network.inputs] == [(-1, -1), (-1, -1)]


def test_polygraphy_fills_a_default_profile_and_uses_its_fallbacks(
    trt: types.ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `config=` makes Polygraphy call parser.set_builder_config, which 10.8 lacks: Polygraphy
    # catches the AttributeError and warns. 11.1 lacks ILayer.precision_is_set, which
    # CreateConfig reads in a try block. An empty Profile is filled with static defaults.
    surface = surface_for_tensorrt(trt.__version__)
    onnx_path = make_image_model(tmp_path / "image.onnx")
    network = network_from_onnx_path(str(onnx_path), strongly_typed=True,
                                      config=_create_config(trt, [Profile()]))
    layer = network[1][0]
    assert hasattr(layer, "precision_is_set") is surface.has_member("ILayer", "precision_is_set")
    plan = engine_bytes_from_network(network, config=_create_config(trt, [Profile()]))
    assert bytes(plan).startswith(PLAN_MAGIC)
    build = double_record(trt).builds[-1]
    assert build.config.profiles == [{"pixels": ((1, 1, 8, 8),) * 3}]
    warned = "does not support parser.set_builder_config()" in capsys.readouterr().out
    assert hasattr(trt.OnnxParser, "set_builder_config") is not warned
    assert warned is trt.__version__.startswith("10.8.")


def test_a_wrong_profile_fails_in_polygraphy(trt: types.ModuleType, tmp_path: Path) -> None:
    onnx_path = make_image_model(tmp_path / "image.onnx")
    network = network_from_onnx_path(str(onnx_path), strongly_typed=True)
    wrong = Profile().add("pixels", (1, 3, 8, 8), (4, 3, 8, 8), (16, 3, 8, 8))  # 3 channels
    with pytest.raises(RuntimeError, match="fixed at 1"):
        engine_bytes_from_network(network, config=_create_config(trt, [wrong]))


def test_a_failed_build_is_an_invalid_engine_for_polygraphy(trt: types.ModuleType) -> None:
    def empty_profile_network() -> tuple[object, object]:
        builder = trt.Builder(trt.Logger())
        network = builder.create_network(0)
        network.add_input("x", trt.float32, (-1, 3))
        return builder, network

    def config(builder: object, network: object) -> object:
        return builder.create_builder_config()  # type: ignore[attr-defined]

    with pytest.raises(PolygraphyException, match="Invalid Engine"):
        engine_bytes_from_network(empty_profile_network, config=config)


# --------------------------------------------------------------------------- (e) trtexec check


def _good_command(surface: TensorRTSurface) -> str:
    level = ("sameComputeCapability"
             if surface.has_enum_member("HardwareCompatibilityLevel", "SAME_COMPUTE_CAPABILITY")
             else "ampere+")
    return ("trtexec --onnx=model.onnx --saveEngine=model.plan --stronglyTyped --noTF32 "
            "--memPoolSize=workspace:1024M,tacticSharedMem:48K --builderOptimizationLevel=3 "
            "--profile=0 --minShapes=ids:1x1,'mask:x':1x1 --optShapes=ids:4x16,'mask:x':4x16 "
            "--maxShapes=ids:8x128,'mask:x':8x128 --versionCompatible "
            f"--hardwareCompatibilityLevel={level} --timingCacheFile=timing.cache")


@pytest.mark.parametrize("tag", TAGS)
def test_a_good_command_passes(tag: str) -> None:
    assert check_trtexec_command(_good_command(load_surface(tag)), load_surface(tag)) == []


@pytest.mark.parametrize("tag", TAGS)
def test_an_unknown_flag_is_named_with_the_release(tag: str) -> None:
    surface = load_surface(tag)
    problems = check_trtexec_command("trtexec --onnx=m.onnx --stronglyTypd", surface)
    assert problems == [f"--stronglyTypd: trtexec of TensorRT {surface.version} has no such flag "
                        "(did you mean --stronglyTyped?)"]


def test_fp16_is_refused_by_trtexec_11_only() -> None:
    command = "trtexec --onnx=m.onnx --fp16"
    assert check_trtexec_command(command, load_surface("10.16")) == []
    (problem,) = check_trtexec_command(command, load_surface("11.1"))
    assert problem.startswith("--fp16: ") and "11.1.0.106" in problem


def test_bad_values_name_flag_value_and_release() -> None:
    s108 = load_surface("10.8.0")
    (problem,) = check_trtexec_command(
        "trtexec --onnx=m.onnx --hardwareCompatibilityLevel=sameComputeCapability", s108)
    assert problem == ("--hardwareCompatibilityLevel=sameComputeCapability: "
                       "'sameComputeCapability' is not one of ampere+, none "
                       "(trtexec of TensorRT 10.8.0.43)")
    problems = check_trtexec_command(
        "trtexec --memPoolSize=workspace:lots,dram:1G --minShapes=x:1x3x --profile "
        "--tacticSources=CUDNN --precisionConstraints=always model.onnx", s108)
    assert problems == [
        "--memPoolSize=workspace:lots,dram:1G: 'workspace:lots': size 'lots' is not a number "
        "with an optional B/K/M/G unit (trtexec of TensorRT 10.8.0.43)",
        "--memPoolSize=workspace:lots,dram:1G: pool 'dram' is not one of dlaGlobalDRAM, "
        "dlaLocalDRAM, dlaSRAM, tacticSharedMem, workspace (trtexec of TensorRT 10.8.0.43)",
        "--minShapes=x:1x3x: 'x:1x3x': dims '1x3x' are not AxBxC integers or 'scalar' "
        "(trtexec of TensorRT 10.8.0.43)",
        "--profile: trtexec of TensorRT 10.8.0.43 needs a value (--profile=...)",
        "--tacticSources=CUDNN: 'CUDNN' must start with + (enable) or - (disable) "
        "(trtexec of TensorRT 10.8.0.43)",
        "--precisionConstraints=always: 'always' is not one of none, obey, prefer "
        "(trtexec of TensorRT 10.8.0.43)",
        "'model.onnx': trtexec of TensorRT 10.8.0.43 takes no positional arguments",
    ]
    assert check_trtexec_command("polygraphy run m.onnx", s108) == [
        "the command must start with trtexec, not 'polygraphy'"]
    assert check_trtexec_command("trtexec --tacticSources=-cudnn,+CUBLAS_LT", s108) == []
