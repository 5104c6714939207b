"""torch stays optional: importing tritonkit.export, and building a spec of ONNX files only,
import no torch (checked in a fresh interpreter, as tests/unit/deployment does)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TORCH = ("torch", "onnxscript")

BUILD_ONNX_ONLY = textwrap.dedent("""
    import sys
    from pathlib import Path

    from tests.onnx_factories import make_image_model
    from tritonkit.build import build_repository
    from tritonkit.spec import Target, parse_spec

    root = Path(sys.argv[1])
    make_image_model(root / "clf.onnx")
    spec = parse_spec("models: [{name: clf, onnx: clf.onnx, max_batch_size: 4}]",
                      root / "models.yaml")
    result = build_repository(spec, target=Target.ONNXRUNTIME, out=root / "repo",
                              cache_dir=root / "cache")
    assert [m.name for m in result.models] == ["clf"]
    assert (root / "repo" / "clf" / "1" / "model.onnx").is_file()
""")
REPORT = ("print(' '.join(m for m in sys.modules for f in {forbidden!r} "
          "if m == f or m.startswith(f + '.')))")


def _loaded(code: str, *args: str) -> list[str]:
    script = code + "\n" + REPORT.format(forbidden=TORCH)
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                            text=True, check=False, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_importing_the_export_package_imports_no_torch() -> None:
    assert _loaded("import sys\nimport tritonkit.export\nimport tritonkit.build") == []


def test_building_an_onnx_only_spec_imports_no_torch(tmp_path: Path) -> None:
    assert _loaded(BUILD_ONNX_ONLY, str(tmp_path)) == []
