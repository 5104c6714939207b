"""`python -m tritonkit_client`: classify images, detect objects, embed texts, upscale images,
check health, list models.

Thin: it parses arguments and calls the library. On failure it prints one line,
``ErrorType: message``, to stderr and exits with the code of the error class (`ExitCode`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any

from tritonkit_client.detection import Detection, annotate, detect
from tritonkit_client.embeddings import embed
from tritonkit_client.errors import (
    ClientError,
    ClientTimeoutError,
    InvalidInputError,
    InvalidOptionError,
    ModelUnavailableError,
    ResourceExhaustedError,
    ServerError,
    ServerUnavailableError,
    SharedMemoryError,
)
from tritonkit_client.results import HealthReport, ModelStatus
from tritonkit_client.sync_client import TritonClient, connect
from tritonkit_client.tasks import Classification, classify
from tritonkit_client.upscale import upscale


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # any other ClientError
    USAGE = 2  # bad arguments, URL or option (argparse uses 2 as well)
    SERVER_UNAVAILABLE = 3
    TIMEOUT = 4
    MODEL_UNAVAILABLE = 5
    INVALID_INPUT = 6
    RESOURCE_EXHAUSTED = 7
    SERVER_ERROR = 8
    SHARED_MEMORY = 9


_EXIT_CODES: dict[type[ClientError], ExitCode] = {
    InvalidOptionError: ExitCode.USAGE,
    ServerUnavailableError: ExitCode.SERVER_UNAVAILABLE,
    ClientTimeoutError: ExitCode.TIMEOUT,
    ModelUnavailableError: ExitCode.MODEL_UNAVAILABLE,
    InvalidInputError: ExitCode.INVALID_INPUT,
    ResourceExhaustedError: ExitCode.RESOURCE_EXHAUSTED,
    ServerError: ExitCode.SERVER_ERROR,
    SharedMemoryError: ExitCode.SHARED_MEMORY,
}


def exit_code_for(error: ClientError) -> ExitCode:
    """The exit code of the most specific known class of `error`."""
    for cls in type(error).__mro__:
        if cls in _EXIT_CODES:
            return _EXIT_CODES[cls]
    return ExitCode.ERROR


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", required=True, help="http://host:port or grpc://host:port")
    common.add_argument(
        "--timeout-s", type=float, default=30.0, help="per-request timeout in seconds"
    )
    common.add_argument(
        "--retries", type=int, default=2, help="retries on unavailable/overloaded server"
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    common.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )

    parser = argparse.ArgumentParser(
        prog="python -m tritonkit_client",
        description="Classify images, check health and list models on a Triton server.",
        epilog="exit codes: " + ", ".join(f"{code.value} {code.name.lower()}" for code in ExitCode),
    )
    commands = parser.add_subparsers(dest="command", required=True)

    classify_parser = commands.add_parser("classify", parents=[common], help="classify image files")
    classify_parser.add_argument("--model", required=True, help="model or pipeline name")
    classify_parser.add_argument("--top-k", type=int, default=1, help="best k per image")
    classify_parser.add_argument("images", nargs="+", type=Path, metavar="IMG")

    health_parser = commands.add_parser(
        "health", parents=[common], help="check liveness and readiness"
    )
    health_parser.add_argument(
        "--model",
        action="append",
        default=[],
        dest="models",
        metavar="M",
        help="a model that must be ready (repeatable)",
    )
    health_parser.add_argument(
        "--wait-s",
        type=float,
        default=None,
        help="wait up to this long for readiness before reporting",
    )

    commands.add_parser("models", parents=[common], help="list the repository's models")

    detect_parser = commands.add_parser("detect", parents=[common],
                                        help="detect objects in image files")
    detect_parser.add_argument("--model", default="detection", help="pipeline name")
    detect_parser.add_argument("--conf-threshold", type=float, default=None,
                               help="minimum score (default: the pipeline's)")
    detect_parser.add_argument("--iou-threshold", type=float, default=None,
                               help="NMS IoU threshold (default: the pipeline's)")
    detect_parser.add_argument("--out", type=Path, default=None,
                               help="write the (first) image with its boxes drawn as PNG")
    detect_parser.add_argument("images", nargs="+", type=Path, metavar="IMG")

    embed_parser = commands.add_parser("embed", parents=[common], help="embed texts")
    embed_parser.add_argument("--model", default="embeddings", help="pipeline name")
    embed_parser.add_argument("texts", nargs="+", metavar="TEXT")

    upscale_parser = commands.add_parser(
        "upscale", parents=[common], help="upscale image files (super-resolution) to PNG")
    upscale_parser.add_argument("--model", default="super_resolution", help="pipeline name")
    upscale_parser.add_argument(
        "--out", type=Path, required=True,
        help="the PNG to write (one image), or a directory for <name>.upscaled.png files")
    upscale_parser.add_argument("images", nargs="+", type=Path, metavar="IMG")
    return parser


def _read_images(paths: Sequence[Path]) -> list[bytes]:
    images = []
    for path in paths:
        try:
            images.append(path.read_bytes())
        except OSError as e:
            raise InvalidInputError(f"cannot read image {str(path)!r}: {e.strerror or e}") from e
    return images


def _format_classification(path: Path, predictions: Sequence[Classification]) -> str:
    shown = ", ".join(f"{p.label} ({p.score:.3f})" for p in predictions)
    return f"{path}: {shown}"


def _run_classify(client: TritonClient, args: argparse.Namespace) -> ExitCode:
    images = _read_images(args.images)
    results = classify(client, args.model, images, top_k=args.top_k)
    if args.json:
        payload = [
            {
                "path": str(path),
                "predictions": [
                    {"label": p.label, "score": p.score, "index": p.index} for p in predictions
                ],
            }
            for path, predictions in zip(args.images, results, strict=True)
        ]
        print(json.dumps(payload, indent=2))
    else:
        for path, predictions in zip(args.images, results, strict=True):
            print(_format_classification(path, predictions))
    return ExitCode.OK


def _health_json(report: HealthReport) -> dict[str, Any]:
    return {
        "url": report.url,
        "live": report.live,
        "ready": report.ready,
        "models": {m.name: m.ready for m in report.models},
        "ok": report.ok,
    }


def _run_health(client: TritonClient, args: argparse.Namespace) -> ExitCode:
    if args.wait_s is not None:
        client.wait_until_ready(models=args.models, timeout_s=args.wait_s)
    report = client.health(models=args.models)
    if args.json:
        print(json.dumps(_health_json(report), indent=2))
    else:
        live = "live" if report.live else "not live"
        ready = "ready" if report.ready else "not ready"
        print(f"{report.url}: {live}, {ready}")
        for model in report.models:
            print(f"model {model.name}: {'ready' if model.ready else 'not ready'}")
    if report.models_not_ready:
        raise ModelUnavailableError(
            f"{report.url}: models not ready: {', '.join(report.models_not_ready)}"
        )
    if not report.ok:
        raise ServerUnavailableError(f"{report.url}: server is not ready")
    return ExitCode.OK


def _status_json(status: ModelStatus) -> dict[str, str]:
    return {
        "name": status.name,
        "version": status.version,
        "state": status.state.value,
        "reason": status.reason,
    }


def _run_models(client: TritonClient, args: argparse.Namespace) -> ExitCode:
    models = client.list_models()
    if args.json:
        print(json.dumps([_status_json(m) for m in models], indent=2))
    else:
        for model in models:
            reason = model.reason.strip().splitlines()[0] if model.reason.strip() else ""
            line = f"{model.name}\t{model.version or '-'}\t{model.state.value}"
            print(f"{line}\t{reason}" if reason else line)
    return ExitCode.OK


def _format_detection(d: Detection) -> str:
    b = d.box
    return f"{d.label} ({d.score:.3f}) [{b.x1:.1f}, {b.y1:.1f}, {b.x2:.1f}, {b.y2:.1f}]"


def _run_detect(client: TritonClient, args: argparse.Namespace) -> ExitCode:
    images = _read_images(args.images)
    results = detect(client, args.model, images, conf_threshold=args.conf_threshold,
                     iou_threshold=args.iou_threshold)
    if args.out is not None:
        try:
            args.out.write_bytes(annotate(images[0], results[0]))
        except OSError as e:
            raise InvalidInputError(f"cannot write {str(args.out)!r}: {e.strerror or e}") from e
    if args.json:
        payload = [{"path": str(path), "detections": [d.to_dict() for d in found]}
                   for path, found in zip(args.images, results, strict=True)]
        print(json.dumps(payload, indent=2))
    else:
        for path, found in zip(args.images, results, strict=True):
            print(f"{path}: {len(found)} objects")
            for d in found:
                print(f"  {_format_detection(d)}")
    return ExitCode.OK


def _run_embed(client: TritonClient, args: argparse.Namespace) -> ExitCode:
    vectors = embed(client, args.model, args.texts)
    if args.json:
        payload = [{"text": text, "embedding": [float(v) for v in vector]}
                   for text, vector in zip(args.texts, vectors, strict=True)]
        print(json.dumps(payload))
    else:
        for text, vector in zip(args.texts, vectors, strict=True):
            head = ", ".join(f"{v:+.4f}" for v in vector[:4])
            print(f"{text!r}: dim {len(vector)}, [{head}, ...]")
    return ExitCode.OK


def upscaled_paths(images: Sequence[Path], out: Path) -> list[Path]:
    """Where `upscale` writes each result: `out` itself for one image that is not a directory,
    else `<out>/<image stem>.upscaled.png` (names must not collide)."""
    if len(images) == 1 and not out.is_dir():
        return [out]
    paths = [out / f"{image.stem}.upscaled.png" for image in images]
    if len(set(paths)) != len(paths):
        raise InvalidInputError("two images share a file name stem; upscale them separately")
    return paths


def _run_upscale(client: TritonClient, args: argparse.Namespace) -> ExitCode:
    images = _read_images(args.images)
    destinations = upscaled_paths(args.images, args.out)
    results = upscale(client, args.model, images)
    for path, destination, result in zip(args.images, destinations, results, strict=True):
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(result.png)
        except OSError as e:
            raise InvalidInputError(f"cannot write {str(destination)!r}: {e.strerror or e}") from e
        if not args.json:
            print(f"{path} -> {destination}: {result.width}x{result.height} PNG")
    if args.json:
        payload = [{"path": str(path), "out": str(destination), "width": result.width,
                    "height": result.height}
                   for path, destination, result in zip(args.images, destinations, results,
                                                        strict=True)]
        print(json.dumps(payload, indent=2))
    return ExitCode.OK


_COMMANDS = {"classify": _run_classify, "health": _run_health, "models": _run_models,
             "detect": _run_detect, "embed": _run_embed, "upscale": _run_upscale}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    levels = {0: logging.ERROR, 1: logging.INFO}
    logging.basicConfig(
        level=levels.get(args.verbose, logging.DEBUG),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        with connect(args.url, timeout_s=args.timeout_s, retries=args.retries) as client:
            return int(_COMMANDS[args.command](client, args))
    except ClientError as e:
        message = " ".join(str(e).split())  # one line, whatever the server's message holds
        print(f"{type(e).__name__}: {message}", file=sys.stderr)
        return int(exit_code_for(e))
