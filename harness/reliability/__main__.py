"""`python -m harness.reliability run [--quick]`: the whole reliability suite; see
harness.reliability.suite."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from harness.reliability.errors import ReliabilityError
from harness.reliability.suite import SuiteOptions, run_suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.reliability")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run every scenario and write results/reliability/latest")
    run.add_argument("--quick", action="store_true", help="10,000-request soak, short windows")
    run.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("reliability").setLevel(logging.INFO)
    options = SuiteOptions(quick=args.quick, soak_requests=10_000 if args.quick else 100_000)
    try:
        run_dir = run_suite(options)
    except (ReliabilityError, OSError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print((run_dir / "summary.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    print(f"report: {options.results_dir / 'latest' / 'report.md'}")
    return 0 if summary["soak_errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
