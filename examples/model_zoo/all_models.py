"""`python -m examples.model_zoo.all_models [--jobs N] [--artifacts DIR] MODEL...`: build
several example models side by side.

Each MODEL (`digits`, `resnet`, `detector`, `text-encoder`, `super-resolution`) runs as
`python -m examples.model_zoo MODEL --out DIR/<name>` in its own process, at most `--jobs`
at a time (default: one per CPU core), started in the order given: name the longest first.
Every line a builder prints is shown as it comes, prefixed with the model's name; a summary
gives each model's result, wall and CPU seconds, and the start of its builder's last
line. Exits non-zero when any builder fails (the others still finish). Each builder keeps
its own stamp, so cached models cost only their start-up.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

# Builder subcommand of `python -m examples.model_zoo` -> folder under --artifacts.
OUT_DIRS = {
    "digits": "digits",
    "resnet": "resnet",
    "detector": "detector",
    "text-encoder": "text_encoder",
    "super-resolution": "super_resolution",
}


@dataclass(frozen=True, kw_only=True)
class BuildResult:
    model: str
    returncode: int
    wall_s: float
    cpu_s: float
    last_line: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class _Printer:
    """Whole lines from several processes, each prefixed with its model's name."""

    def __init__(self, width: int) -> None:
        self._lock = threading.Lock()
        self._width = width

    def line(self, model: str, text: str) -> None:
        with self._lock:
            _out(f"{model:<{self._width}} | {text}")


def _out(text: str, *, stream: TextIO | None = None) -> None:
    """One line to `stream` (default: sys.stdout as it is now, so a capture sees it)."""
    target = stream or sys.stdout
    target.write(text + "\n")
    target.flush()


def _command(model: str, artifacts: Path) -> list[str]:
    return [sys.executable, "-m", "examples.model_zoo", model,
            "--out", str(artifacts / OUT_DIRS[model])]


def _run_one(model: str, artifacts: Path, printer: _Printer) -> BuildResult:
    started = time.monotonic()
    printer.line(model, "started: " + " ".join(_command(model, artifacts)[1:]))
    # Builders share the cores: OpenMP threads that spin while they wait for a descheduled
    # peer burned several times the CPU of the work itself (a 2-thread trainer beside another
    # builder on 2 cores, measured). Sleeping instead does not change any result.
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(_command(model, artifacts), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace", env=env)
    last_line = ""
    for raw in process.stdout or ():
        text = raw.rstrip("\n")
        if text.strip():
            last_line = text
        printer.line(model, text)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return BuildResult(model=model, returncode=process.returncode,
                       wall_s=time.monotonic() - started,
                       cpu_s=usage.ru_utime + usage.ru_stime, last_line=last_line)


def build_models(models: Sequence[str], *, artifacts: Path, jobs: int) -> list[BuildResult]:
    """Run the builders, at most `jobs` at a time in the given order; results in that order."""
    printer = _Printer(max(len(m) for m in models))

    def run_and_report(model: str) -> BuildResult:
        result = _run_one(model, artifacts, printer)
        state = "ok" if result.ok else f"FAILED (exit {result.returncode})"
        printer.line(model, f"{state} in {result.wall_s:.1f} s ({result.cpu_s:.1f} CPU s)")
        return result

    # the pool takes work first in, first out: the builders start in the order given
    with ThreadPoolExecutor(max_workers=min(jobs, len(models)),
                            thread_name_prefix="builder") as pool:
        return list(pool.map(run_and_report, models))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m examples.model_zoo.all_models",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", choices=sorted(OUT_DIRS), metavar="MODEL",
                        help=f"builders to run, longest first ({', '.join(OUT_DIRS)})")
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"),
                        help="each model goes to ARTIFACTS/<name> (default: artifacts)")
    parser.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1,
                        help="builders at a time (default: the CPU count)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.jobs < 1:
        _out("ValueError: --jobs must be at least 1", stream=sys.stderr)
        return 2
    models = list(dict.fromkeys(args.models))
    started = time.monotonic()
    _out(f"building {len(models)} models, {min(args.jobs, len(models))} at a time: "
         f"{', '.join(models)}")
    results = build_models(models, artifacts=args.artifacts, jobs=args.jobs)
    width = max(len(r.model) for r in results)
    _out(f"model builders done in {time.monotonic() - started:.1f} s:")
    for r in results:
        state = "ok    " if r.ok else "FAILED"
        _out(f"  {r.model:<{width}} {state} {r.wall_s:6.1f} s {r.cpu_s:6.1f} CPU s  "
             f"{r.last_line.split(';')[0]}")
    failed = [r.model for r in results if not r.ok]
    if failed:
        _out(f"ModelZooError: {', '.join(failed)} failed; see the lines above",
             stream=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
