"""A user's first hour: the README's "Your own ONNX model" section, run as written.

Its code blocks run in order as one bash script: `make wheels` in the checkout, then a fresh
virtualenv in an empty folder outside it (`~/my_project`, with HOME a temporary folder), the
wheels installed, a model written, the spec saved, build, lint, serve, the Python call and the
stop. Three things differ from a user's shell, all outside the README's text: the ports 8000
and 8001 become free ones; pip gets the tested pins as constraints (`PIP_CONSTRAINT`), so it
installs the versions the pip cache already holds; and the cache folder (`XDG_CACHE_HOME`)
stays this machine's, where `make setup` built Triton's ONNX Runtime backend for this
onnxruntime (a user's first `tritonkit serve` builds it there once).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tritonkit.server.ports import pick_free_ports

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
SECTION = "### Your own ONNX model"
TIMEOUT_S = 1500
FENCE = re.compile(r"^( *)```(\w+)\n(.*?)^\1```$", re.M | re.S)


def readme_blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block of the section, in order."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start)
    return [(lang, textwrap.dedent(code)) for _, lang, code in FENCE.findall(text[start:end])]


def as_script(blocks: list[tuple[str, str]], ports: dict[str, str]) -> str:
    lines = ["set -euo pipefail",
             # whatever happens, no server outlives the script
             "trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT"]
    for lang, written in blocks:
        code = written
        for old, new in ports.items():
            code = re.sub(rf"\b{old}\b", new, code)
        if lang == "bash":
            lines.append(code)
        elif lang == "python":
            lines.append(f"python - <<'README_PYTHON'\n{code}README_PYTHON")
        elif lang == "yaml":
            name = code.splitlines()[0].removeprefix("#").strip()
            lines.append(f"cat > {name} <<'README_YAML'\n{code}README_YAML")
        else:
            raise AssertionError(f"no way to run a {lang} block")
    return "\n".join(lines) + "\n"


def test_the_section_has_every_step() -> None:
    blocks = readme_blocks()
    joined = "\n".join(code for _, code in blocks)
    for step in ("make wheels", "python3 -m venv", "pip install", "tritonkit build",
                 "tritonkit lint", "tritonkit serve", "from tritonkit_client import connect"):
        assert step in joined, f"the README section lost its {step!r} step"
    assert [lang for lang, _ in blocks].count("yaml") == 1


def _user_environment(home: Path) -> dict[str, str]:
    """The caller's environment without this checkout's virtualenv; python3 is the base
    interpreter this one was made from (the local server's stub must match its version)."""
    base_bin = str(Path(sys._base_executable).parent)
    path = [p for p in os.environ["PATH"].split(os.pathsep)
            if p and not Path(p).resolve().is_relative_to(Path(sys.prefix).resolve())]
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    env.update(HOME=str(home), PATH=os.pathsep.join([base_bin, *path]), XDG_CACHE_HOME=cache,
               PIP_CONSTRAINT=str(REPO_ROOT / "constraints.txt"),
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def test_the_readme_section_runs_as_written(tmp_path: Path) -> None:
    http, grpc = (str(p) for p in pick_free_ports(2))
    script = as_script(readme_blocks(), {"8000": http, "8001": grpc})
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.Popen(["bash", "-c", script], cwd=REPO_ROOT, env=_user_environment(home),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, output[-6000:]
    wheels = {w.name.split("-")[0]: w for w in (REPO_ROOT / "dist").glob("*.whl")}
    for root, wheel in wheels.items():  # each wheel: its one root and its metadata, no more
        with zipfile.ZipFile(wheel) as archive:
            top = {name.split("/")[0] for name in archive.namelist()}
        assert top == {root, f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    assert sorted(wheels) == ["tritonkit", "tritonkit_client"]
    project = home / "my_project"
    installed = list((project / ".venv").glob("lib/python*/site-packages/tritonkit/__init__.py"))
    assert installed, "tritonkit is not installed in the project's virtualenv"
    assert not any((project / ".venv").glob("lib/python*/site-packages/__editable__*"))
    assert "my_classifier_fp16" in output and "PASS" in output  # the accuracy gate ran
    assert "no problems" in output  # lint
    found = re.search(r"probabilities \(40, 4\), fp16 top-1 agreement (\d\.\d+)", output)
    assert found, output[-3000:]
    assert float(found.group(1)) >= 0.99
