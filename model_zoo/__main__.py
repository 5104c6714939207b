"""`python -m model_zoo {digits,resnet} --out DIR [--force] [-v]`: build example models.

`python -m model_zoo digits-images --out DIR --count N` writes test-split PNGs to try clients.
"""

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
    resnet = models.add_parser("resnet",
                               help="ResNet-18-style CNN, 224x224 RGB, random seeded weights")
    resnet.add_argument("--out", type=Path, default=Path("artifacts/resnet"),
                        help="output directory (default: artifacts/resnet)")
    resnet.add_argument("--force", action="store_true",
                        help="rebuild even when the stamp says the outputs are up to date")
    images = models.add_parser("digits-images",
                               help="write digits test-split images as PNG files to try clients")
    images.add_argument("--out", type=Path, default=Path("artifacts/digits/images"))
    images.add_argument("--count", type=int, default=10)
    return parser


def _write_images(out: Path, count: int) -> int:
    from model_zoo.digits import encoded_split  # noqa: PLC0415

    blobs, labels = encoded_split("test")
    out.mkdir(parents=True, exist_ok=True)
    for index, (blob, label) in enumerate(zip(blobs[:count], labels[:count], strict=True)):
        (out / f"test{index:03d}_label{label}.png").write_bytes(blob)
    print(f"wrote {min(count, len(blobs))} PNG files to {out}")
    return 0


def _build_resnet(out: Path, *, force: bool, started: float) -> int:
    try:
        from model_zoo.resnet import build_resnet  # noqa: PLC0415 -- torch loads only here

        result = build_resnet(out, force=force)
    except ModelZooError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    state = "cached" if result.cached else "built"
    print(f"resnet {state} in {time.perf_counter() - started:.1f}s: "
          f"{result.parameters} parameters; {result.onnx}, {result.labels}, {result.holdout}, "
          f"{result.metrics}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.model == "digits-images":
        return _write_images(args.out, args.count)
    started = time.perf_counter()
    if args.model == "resnet":
        return _build_resnet(args.out, force=args.force, started=started)
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
