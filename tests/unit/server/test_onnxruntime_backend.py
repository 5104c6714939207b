"""tritonkit.server.onnxruntime_backend: cache lookup, the build key, the offline source check
and the googletest-free copy of `common` (the compile itself runs in `make setup`)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tritonkit.errors import NativeBuildError
from tritonkit.server import onnxruntime_backend as ob

SHARED = Path(__file__).resolve().parents[4] / "shared" / "third_party"


def _record(**overrides: object) -> ob.BackendBuild:
    base = ob.BackendBuild(branch="r24.10", sources={"core": "abc"}, header_sha256="h",
                           onnxruntime="1.31.1", compiler="g++ 12", cmake="cmake 3.25")
    return replace(base, **overrides)


def test_the_key_changes_with_every_input() -> None:
    keys = {_record().key(), _record(onnxruntime="1.20.0").key(),
            _record(compiler="g++ 13").key(), _record(sources={"core": "abd"}).key(),
            _record(header_sha256="i").key(), _record(cmake="cmake 3.28").key()}
    assert len(keys) == 6
    assert _record().key() == _record().key()


def _cached(cache: Path, name: str, onnxruntime: str) -> Path:
    folder = cache / name
    folder.mkdir(parents=True)
    (folder / ob.BACKEND_LIBRARY).write_bytes(b"\x7fELF")
    (folder / ob.RECORD).write_text(json.dumps({"onnxruntime": onnxruntime}))
    return folder / ob.BACKEND_LIBRARY


def test_a_cached_build_for_another_onnxruntime_is_not_used(tmp_path: Path) -> None:
    version = ob.onnxruntime_library().name.removeprefix("libonnxruntime.so.")
    assert ob.find_onnxruntime_backend(tmp_path) is None
    _cached(tmp_path, "other", "0.0.1")
    assert ob.find_onnxruntime_backend(tmp_path) is None
    mine = _cached(tmp_path, "mine", version)
    assert ob.find_onnxruntime_backend(tmp_path) == mine


def test_serves_onnxruntime_reads_the_configs(tmp_path: Path) -> None:
    (tmp_path / "step").mkdir()
    (tmp_path / "step" / "config.pbtxt").write_text('name: "step"\nbackend: "python"\n')
    assert not ob.serves_onnxruntime(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.pbtxt").write_text('name: "model"\nbackend: "onnxruntime"\n')
    assert ob.serves_onnxruntime(tmp_path)


def test_given_sources_must_be_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "CMakeLists.txt").write_text("")
    monkeypatch.setenv(ob.SOURCES_ENV, str(tmp_path))
    with pytest.raises(NativeBuildError, match="lacks onnxruntime_backend, backend, common"):
        ob.ensure_onnxruntime_backend(tmp_path / "cache")


@pytest.mark.skipif(not (SHARED / "triton-r24.10").is_dir(),
                    reason="the shared third_party sources are not beside this checkout")
def test_the_common_copy_drops_only_the_googletest_folder(tmp_path: Path) -> None:
    original = (SHARED / "triton-r24.10" / "common" / "src" / "CMakeLists.txt").read_text()
    assert "add_subdirectory(test)" in original
    copy = ob._without_googletest(SHARED / "triton-r24.10" / "common", tmp_path)
    edited = (copy / "src" / "CMakeLists.txt").read_text()
    assert "add_subdirectory(test)" not in edited
    assert len(original.splitlines()) - len(edited.splitlines()) <= 1
