"""`python -m tritonkit.tensorrt.api extract --api-root DIR --out DIR` (and `check`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from tritonkit.errors import ToolkitError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tritonkit.tensorrt.api",
                                     description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    commands = parser.add_subparsers(dest="command", required=True)
    extract = commands.add_parser("extract", help="write data/tensorrt-<tag>.json per release")
    extract.add_argument("--api-root", type=Path, required=True,
                         help="folder of release folders (v10.8.0/, v10.16/, ...)")
    extract.add_argument("--out", type=Path, required=True, help="folder for the JSON files")
    check = commands.add_parser("check", help="check a trtexec command against a release")
    check.add_argument("--tensorrt", required=True, help="TensorRT version, e.g. 10.8.0.43")
    check.add_argument("trtexec_command", help="the whole command line, quoted")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else
                        logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)-7s %(message)s", stream=sys.stderr)
    try:
        if args.command == "extract":
            from tritonkit.tensorrt.api.extract import extract_all  # noqa: PLC0415

            for path in extract_all(args.api_root, args.out):
                print(path)
            return 0
        from tritonkit.tensorrt.api.surface import surface_for_tensorrt  # noqa: PLC0415
        from tritonkit.tensorrt.api.trtexec_check import check_trtexec_command  # noqa: PLC0415

        problems = check_trtexec_command(args.trtexec_command, surface_for_tensorrt(args.tensorrt))
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    except (ToolkitError, OSError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
