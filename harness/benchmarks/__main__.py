"""`python -m harness.benchmarks run [--smoke] [--compare DIR]` and `python -m harness.benchmarks
compare A B` and `python -m harness.benchmarks input-data --workload W --out F`.

`run` measures every system side by side and writes results/bench/<timestamp>/ (report.md,
raw CSVs, plots, summary.json), then points results/bench/latest at it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from tritonkit_client import ClientError

from harness.benchmarks.errors import BenchmarkError
from harness.benchmarks.report import compare, format_regressions, load_summary
from harness.benchmarks.runner import FULL, SMOKE, run_benchmarks
from tritonkit.errors import ToolkitError
from tritonkit.spec import load_overlay


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console  # noqa: PLC0415

    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="bench-") as work, \
            console.status("benchmarking…") as status:

        def show(text: str) -> None:
            status.update(text)
            logging.getLogger("benchmarks").info("%s", text)

        overlay = load_overlay(args.overlay) if args.overlay else None
        run_dir = run_benchmarks(SMOKE if args.smoke else FULL, spec_path=args.spec,
                                 out_root=args.out, work=Path(work), on_phase=show,
                                 overlay=overlay)
    verify_run(run_dir)
    summary = load_summary(run_dir)
    print(f"report: {run_dir / 'report.md'}")
    values = summary.to_dict()
    for check in summary.targets():
        print(f"  {'met ' if check.met else 'MISS'} {check.key} = {values[check.key]:.3g} "
              f"(target {check.description})")
    if args.compare is not None:
        return _compare(run_dir, args.compare, args.tolerance)
    return 0


def verify_run(run_dir: Path) -> None:
    """The harness worked: every file of a run is there (speed is not judged here)."""
    missing = [name for name in ("report.md", "summary.json") if not (run_dir / name).is_file()]
    if not list((run_dir / "plots").glob("*.png")):
        missing.append("plots/*.png")
    if not list((run_dir / "raw").glob("*.csv")):
        missing.append("raw/*.csv")
    latest = run_dir.parent / "latest"
    if not (latest / "summary.json").is_file():
        missing.append(f"{latest}/summary.json")
    if missing:
        raise BenchmarkError(f"{run_dir}: the run is incomplete; missing {', '.join(missing)}")


def _compare(current: Path, saved: Path, tolerance: float) -> int:
    regressions = compare(current, saved, tolerance=tolerance)
    if regressions:
        print(format_regressions(regressions))
        print(f"Regression: {len(regressions)} metric(s) worse than {saved} by more than "
              f"{tolerance:.0%}", file=sys.stderr)
        return 1
    print(f"no regressions against {saved} (tolerance {tolerance:.0%})")
    return 0


def _input_data(args: argparse.Namespace) -> int:
    """The workload's real inputs as perf_analyzer input data (what `tritonkit tune` takes)."""
    from harness.benchmarks.workloads import load_workload  # noqa: PLC0415
    from tritonkit.tuning import write_input_data  # noqa: PLC0415

    workload = load_workload(args.workload, count=args.count)
    path = write_input_data(workload.samples(), args.out)
    print(f"{path}: {args.count} real inputs of the {workload.pipeline} pipeline")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.benchmarks", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="measure all systems and write a report")
    run.add_argument("--smoke", action="store_true", help="short windows: checks the harness")
    run.add_argument("--spec", type=Path, default=Path("models.yaml"))
    run.add_argument("--overlay", type=Path, default=None,
                     help="serving settings measured by `tritonkit tune` (tuning/local.yaml)")
    run.add_argument("--out", type=Path, default=Path("results/bench"))
    run.add_argument("--compare", type=Path, default=None, help="a saved run to compare with")
    run.add_argument("--tolerance", type=float, default=0.10)
    cmp = sub.add_parser("compare", help="flag regressions of one run against another")
    cmp.add_argument("current", type=Path)
    cmp.add_argument("saved", type=Path)
    cmp.add_argument("--tolerance", type=float, default=0.10)
    data = sub.add_parser("input-data", help="write a workload's real inputs for perf_analyzer")
    data.add_argument("--workload", required=True, choices=["light", "heavy", "detection",
                                                            "embeddings"])
    data.add_argument("--count", type=int, default=64)
    data.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "compare":
            return _compare(args.current, args.saved, args.tolerance)
        if args.command == "input-data":
            return _input_data(args)
        return _run(args)
    except (BenchmarkError, ToolkitError, ClientError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
