"""`python -m model_zoo digits --out artifacts/digits [--force] [-v]`: build example models."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from model_zoo import ModelZooError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model_zoo", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    models = parser.add_subparsers(dest="model", required=True)
    digits = models.add_parser("digits", help="8x8 digits CNN (scikit-learn data, offline)")
    digits.add_argument("--out", type=Path, default=Path("artifacts/digits"),
                        help="output directory (default: artifacts/digits)")
    digits.add_argument("--force", action="store_true",
                        help="rebuild even when the stamp says the outputs are up to date")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    try:
        from model_zoo.digits import build_digits  # noqa: PLC0415 -- torch loads only here

        result = build_digits(args.out, force=args.force)
    except ModelZooError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    state = "cached" if result.cached else "built"
    print(f"digits {state} in {time.perf_counter() - started:.1f}s: "
          f"test accuracy {result.test_accuracy:.4f}; {result.onnx}, {result.labels}, "
          f"{result.calibration}, {result.holdout}, {result.metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
