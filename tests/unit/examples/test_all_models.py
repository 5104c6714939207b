"""examples.model_zoo.all_models, run for real: the driver as a subprocess, its builders as tiny
stand-in processes.

The driver starts `python -m examples.model_zoo MODEL --out DIR` in its own working directory,
and `python -m` looks in the working directory first. Run from a folder that holds a stand-in
`examples/model_zoo/__main__.py`, each builder is a short real process doing what
`behaviour.json` says: print lines, write to stderr, exit with a code, or wait until another
builder has started or finished (which shows what runs side by side). No subprocess is mocked.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from examples.model_zoo import __main__ as zoo_cli
from examples.model_zoo import all_models

ROOT = Path(__file__).resolve().parents[3]
DRIVER = ROOT / "examples" / "model_zoo" / "all_models.py"

# The stand-in builder: argv is [model, "--out", DIR], as the driver passes it.
STAND_IN = '''
import json, pathlib, sys, time

model = sys.argv[1]
here = pathlib.Path.cwd()
with (here / "calls.jsonl").open("a") as calls:
    calls.write(json.dumps(sys.argv[1:]) + "\\n")
(here / f"{model}.started").touch()
plan = json.loads((here / "behaviour.json").read_text()).get(model, {})
deadline = time.monotonic() + plan.get("timeout", 20)
for other in plan.get("wait_for_start", []):
    while not (here / f"{other}.started").exists():
        if time.monotonic() > deadline:
            print(f"never saw {other} start", file=sys.stderr)
            sys.exit(9)
        time.sleep(0.01)
for other in plan.get("requires_done", []):
    if not (here / f"{other}.done").exists():
        print(f"{other} has not finished", file=sys.stderr)
        sys.exit(8)
for line in plan.get("lines", []):
    print(line, flush=True)
if plan.get("stderr"):
    print(plan["stderr"], file=sys.stderr, flush=True)
(here / f"{model}.done").touch()
sys.exit(plan.get("exit", 0))
'''


def run_driver(root: Path, behaviour: dict[str, dict[str, Any]], *args: str,
               ) -> subprocess.CompletedProcess[str]:
    """all_models.py with `args`, from `root`, with the stand-in builders there."""
    package = root / "examples" / "model_zoo"
    package.mkdir(parents=True)
    (root / "examples" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(STAND_IN)
    (root / "behaviour.json").write_text(json.dumps(behaviour))
    # PYTHONSAFEPATH would keep `python -m` from looking in the working directory
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    return subprocess.run([sys.executable, str(DRIVER), "--artifacts", "art", *args],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def calls(root: Path) -> list[list[str]]:
    lines = (root / "calls.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def summary(stdout: str) -> list[str]:
    """The lines after 'model builders done in ... s:'."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if re.fullmatch(r"model builders done in \d+\.\d s:", line))
    return lines[start + 1:]


def test_every_builder_line_is_prefixed_and_the_summary_has_a_line_per_model(
        tmp_path: Path) -> None:
    result = run_driver(tmp_path, {
        "text-encoder": {"lines": ["loading the model", "exported model.onnx; 3 files", ""]},
        "digits": {"lines": ["trained; accuracy 0.99"], "stderr": "a warning"},
    }, "--jobs", "2", "text-encoder", "digits")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "building 2 models, 2 at a time: text-encoder, digits"
    # every line until the summary comes from a builder, prefixed with its name padded to
    # the longest name, whole (two builders print at once)
    body = lines[1:lines.index(next(x for x in lines if x.startswith("model builders done")))]
    assert body and all(re.match(r"(text-encoder|digits      ) \| ", x) for x in body), body
    for line in ("text-encoder | loading the model",
                 "text-encoder | exported model.onnx; 3 files",
                 "text-encoder | started: -m examples.model_zoo text-encoder --out "
                 "art/text_encoder",
                 "digits       | trained; accuracy 0.99",
                 "digits       | a warning"):  # stderr comes through the same way
        assert line in body
    assert sum(re.fullmatch(r"(text-encoder|digits      ) \| ok in \d+\.\d s "
                            r"\(\d+\.\d CPU s\)", x) is not None for x in body) == 2
    # the summary: one line per model in the order given, its last non-blank line cut at ';'
    rows = summary(result.stdout)
    assert len(rows) == 2
    assert re.fullmatch(r"  text-encoder ok +\d+\.\d s +\d+\.\d CPU s  exported model\.onnx",
                        rows[0]), rows[0]
    assert re.fullmatch(r"  digits       ok +\d+\.\d s +\d+\.\d CPU s  a warning", rows[1]), rows
    assert sorted(calls(tmp_path)) == [["digits", "--out", "art/digits"],
                                       ["text-encoder", "--out", "art/text_encoder"]]


def test_a_failing_builder_fails_the_driver_and_the_others_still_run(tmp_path: Path) -> None:
    result = run_driver(tmp_path, {
        "resnet": {"lines": ["training"], "stderr": "ModelZooError: no weights; stop",
                   "exit": 3},
        "digits": {"lines": ["trained"], "requires_done": ["resnet"]},
    }, "--jobs", "1", "resnet", "digits")
    assert result.returncode == 1
    assert result.stderr.strip() == "ModelZooError: resnet failed; see the lines above"
    assert "resnet | ModelZooError: no weights; stop" in result.stdout
    assert re.search(r"^resnet \| FAILED \(exit 3\) in \d+\.\d s", result.stdout, re.M)
    assert re.search(r"^digits \| ok in ", result.stdout, re.M)
    rows = summary(result.stdout)
    assert re.fullmatch(r"  resnet FAILED +\d+\.\d s +\d+\.\d CPU s  ModelZooError: no weights",
                        rows[0]), rows
    assert re.fullmatch(r"  digits ok +\d+\.\d s +\d+\.\d CPU s  trained", rows[1]), rows
    assert [c[0] for c in calls(tmp_path)] == ["resnet", "digits"]


def test_builders_run_side_by_side_up_to_jobs_in_the_order_given(tmp_path: Path) -> None:
    # detector and digits each wait for the other to start: both pass only side by side;
    # resnet, third with --jobs 2, starts only once one of them has finished
    result = run_driver(tmp_path, {
        "detector": {"wait_for_start": ["digits"]},
        "digits": {"wait_for_start": ["detector"]},
        "resnet": {"requires_done": ["detector"]},
    }, "--jobs", "2", "detector", "digits", "resnet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == (
        "building 3 models, 2 at a time: detector, digits, resnet")
    assert [c[0] for c in calls(tmp_path)][2] == "resnet"
    assert [row.split()[0] for row in summary(result.stdout)] == ["detector", "digits", "resnet"]


def test_one_at_a_time_a_waiting_builder_fails_naming_what_it_missed(tmp_path: Path) -> None:
    # the same pair with --jobs 1 cannot meet: the first gives up, then the second runs
    result = run_driver(tmp_path, {
        "detector": {"wait_for_start": ["digits"], "timeout": 1},
        "digits": {},
    }, "--jobs", "1", "detector", "digits")
    assert result.returncode == 1
    assert "detector | never saw digits start" in result.stdout
    assert [c[0] for c in calls(tmp_path)] == ["detector", "digits"]


def test_a_model_named_twice_is_built_once(tmp_path: Path) -> None:
    result = run_driver(tmp_path, {}, "digits", "digits")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == "building 1 models, 1 at a time: digits"
    assert calls(tmp_path) == [["digits", "--out", "art/digits"]]
    assert len(summary(result.stdout)) == 1


def test_jobs_below_one_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert all_models.main(["--jobs", "0", "digits"]) == 2
    assert capsys.readouterr().err == "ValueError: --jobs must be at least 1\n"


def test_an_unknown_model_is_refused_before_anything_runs(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        all_models.main(["digits", "no-such-model"])
    assert info.value.code == 2
    assert "invalid choice: 'no-such-model'" in capsys.readouterr().err


def test_out_dirs_name_every_builder_of_the_model_zoo_cli_and_its_default_folder() -> None:
    parser = zoo_cli._parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    builders = set(commands.choices) - {"digits-images"}  # writes images, builds no model
    assert set(all_models.OUT_DIRS) == builders
    for model, folder in all_models.OUT_DIRS.items():
        assert parser.parse_args([model]).out == Path("artifacts") / folder
        assert all_models._command(model, Path("a"))[1:] == [
            "-m", "examples.model_zoo", model, "--out", str(Path("a") / folder)]


def test_the_makefile_builds_every_model_longest_first() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    found = re.search(r"^MODELS := (.+)$", makefile, re.M)
    assert found is not None
    models = found.group(1).split()
    assert sorted(models) == sorted(all_models.OUT_DIRS)
    assert models[0] == "detector"  # the longest builder (~120 CPU s) starts first


def test_lines_go_to_the_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """Not to the stdout of import time: a capture (pytest's, a caller's) sees them."""
    all_models._out("detector | ok")
    assert capsys.readouterr().out == "detector | ok\n"
