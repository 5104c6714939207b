"""`python -m harness.scaleout {run,shm-size,check-versions}`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.scaleout.errors import ScaleoutError
from tritonkit.errors import ToolkitError


def _run(args: argparse.Namespace) -> int:
    from harness.scaleout.harness import ScaleoutSettings, run_scaleout, write_summary  # noqa: PLC0415

    settings = ScaleoutSettings(spec=args.spec, replicas=args.replicas, phase_s=args.phase_s)
    summary = run_scaleout(settings)
    path = write_summary(summary, args.out)
    print(summary.to_json(), end="")
    print(f"wrote {path}")
    if summary.failed_requests or not summary.recovered:
        print(f"ScaleoutFailed: {summary.failed_requests} failed request(s), "
              f"recovered={summary.recovered}", file=sys.stderr)
        return 1
    return 0


def _shm_size(args: argparse.Namespace) -> int:
    from harness.scaleout.shm_size import estimate_shm_size  # noqa: PLC0415

    estimate = estimate_shm_size(args.repository, gpu_count=args.gpus)
    for model in estimate.models:
        print(f"  {model.name:<28} {model.instances} x {model.per_instance_bytes / 2**20:.1f} MiB")
    print(f"shm_size: {estimate.compose_value}")
    return 0


def _check_versions(args: argparse.Namespace) -> int:
    from harness.scaleout.versions import consistency_problems  # noqa: PLC0415

    problems = consistency_problems(args.root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} version problem(s)", file=sys.stderr)
        return 1
    print("every deployment file uses the release of docker/versions.env")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.scaleout", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="replicas behind nginx, one killed under load")
    run.add_argument("--spec", type=Path, default=Path("models.yaml"))
    run.add_argument("--replicas", type=int, default=3)
    run.add_argument("--phase-s", type=float, default=8.0)
    run.add_argument("--out", type=Path, default=Path("results/scaleout"))
    run.set_defaults(run=_run)
    shm = sub.add_parser("shm-size", help="the /dev/shm size a repository needs")
    shm.add_argument("repository", type=Path)
    shm.add_argument("--gpus", type=int, default=1)
    shm.set_defaults(run=_shm_size)
    versions = sub.add_parser("check-versions", help="deployment files vs docker/versions.env")
    versions.add_argument("--root", type=Path, default=Path("."))
    versions.set_defaults(run=_check_versions)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.run(args))
    except (ScaleoutError, ToolkitError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
