"""`python -m examples.demo`: build the example repository, serve it on a real local Triton, and
run the four example pipelines over HTTP and gRPC: digits classification (accuracy on the test
split), shape detection (mAP@0.5 on unseen synthetic images), text embeddings (cosine against
sentence-transformers on unseen sentences) and x2 super-resolution (PSNR on held-out
photographs, against bicubic). Each figure is compared with the in-process one; exits non-zero
when a served figure differs from it or a figure is below its bar."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from tritonkit_client import ClientError

from examples.demo.detection import run_detection
from examples.demo.digits import DigitsReport, run_digits
from examples.demo.embeddings import run_embeddings
from examples.demo.summary import summary_lines
from examples.demo.super_resolution import run_super_resolution
from examples.model_zoo import ModelZooError
from examples.model_zoo.detector import build_detector
from examples.model_zoo.digits import build_digits, encoded_split
from examples.model_zoo.super_resolution import build_super_resolution
from examples.model_zoo.text_encoder import export_text_encoder
from tritonkit.build import build_repository, resolve_target
from tritonkit.errors import ToolkitError
from tritonkit.server import LocalTriton
from tritonkit.spec import Target, applicable_overlay, load_overlay, load_spec

console = Console()


def _report(report: DigitsReport) -> None:
    table = Table(title=f"digits pipeline: {report.images} test images (encoded PNG)")
    table.add_column("path")
    table.add_column("accuracy", justify="right")
    table.add_column("= in-process", justify="center")
    table.add_column("s", justify="right")
    table.add_row("in-process (ONNX Runtime)",
                  f"{report.reference_accuracy:.4f}", "-", "-")
    for run in report.runs:
        same = bool((run.top1 == report.reference_top1).all())
        table.add_row(f"Triton {run.protocol}", f"{run.accuracy:.4f}",
                      "yes" if same else "NO", f"{run.seconds:.2f}")
    console.print(table)
    console.print("sample predictions (gRPC):")
    for i in range(5):
        shown = ", ".join(f"{c.label} ({c.score:.3f})" for c in report.runs[-1].predictions[i])
        console.print(f"  image {i}: true {report.labels[i]} -> {shown}")


_ORT_MODEL = re.compile(r'onnxruntime\.cc:\d+\] "TRITONBACKEND_ModelInitialize: (\S+) \(version')


def onnxruntime_models(log: Path) -> list[str]:
    """The models the server log shows Triton's ONNX Runtime backend initializing."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    return sorted(set(_ORT_MODEL.findall(text)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument("--spec", type=Path, default=Path("models.yaml"))
    parser.add_argument("--out", type=Path, default=Path("build/model_repository"))
    parser.add_argument("--target", choices=[t.value for t in Target], default="auto")
    parser.add_argument("--overlay", type=Path, default=None,
                        help="serving settings measured by `tritonkit tune` (tuning/local.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        artifacts = args.spec.parent / "artifacts"
        with console.status("training/exporting the example models (cached)…"):
            build_digits(artifacts / "digits")
            build_detector(artifacts / "detector")
            export_text_encoder(artifacts / "text_encoder")
            build_super_resolution(artifacts / "super_resolution")
        overlay = applicable_overlay(load_overlay(args.overlay) if args.overlay else None,
                                     requested=Target(args.target),
                                     resolved=resolve_target(Target(args.target)))
        spec = load_spec(args.spec, overlay=overlay)
        with console.status("building the model repository…") as status:
            built = build_repository(spec, target=Target(args.target), out=args.out,
                                     on_step=status.update)
        console.print(f"repository {args.out} (target {built.target.value}, "
                      f"{'up to date' if built.up_to_date else f'built in {built.seconds:.1f} s'})")
        images, labels = encoded_split("test")
        with console.status("starting the local Triton server…"):
            server = LocalTriton(args.out, log_path=args.out.parent / "tritonserver.log")
            server.start()
        try:
            console.print(f"Triton ready in {server.startup_s:.1f} s: {server.urls.http}, "
                          f"{server.urls.grpc}")
            native = onnxruntime_models(args.out.parent / "tritonserver.log")
            console.print(f"model steps on Triton's ONNX Runtime backend (server log): "
                          f"{', '.join(native) or 'none'}", highlight=False, soft_wrap=True)
            with Progress(console=console, transient=True) as progress:
                tasks = {p: progress.add_task(f"classifying over {p}", total=len(images))
                         for p in ("HTTP", "gRPC")}
                report = run_digits(args.out, spec, server.urls, images=images, labels=labels,
                                    advance=lambda p, n: progress.advance(tasks[p], n))
            with console.status("detecting shapes over HTTP and gRPC…"):
                detection = run_detection(args.out, spec, server.urls)
            with console.status("embedding sentences over HTTP and gRPC…"):
                embeddings = run_embeddings(args.out, spec, server.urls)
            with console.status("upscaling held-out photographs over HTTP and gRPC…"):
                upscaled = run_super_resolution(args.out, spec, server.urls)
        finally:
            with console.status("stopping the server…"):
                server.stop()
    except (ToolkitError, ClientError, ModelZooError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    _report(report)
    console.print(f"detection: {detection.images} unseen synthetic images, "
                  f"{detection.objects} objects; embeddings: {embeddings.sentences} unseen "
                  f"sentences vs sentence-transformers; super-resolution: {upscaled.images} "
                  "held-out photographs (x2, PSNR on Y)")
    lines = summary_lines(report, detection, embeddings, upscaled)
    for text, ok in lines:
        console.print(f"{text} {'OK' if ok else 'MISMATCH'}", highlight=False, soft_wrap=True)
    consistent = all(ok for _, ok in lines)
    if not (report.consistent and consistent):
        print("Mismatch: a served result differs from the in-process result or is below its "
              "bar", file=sys.stderr)
        return 1
    console.print("served figures equal the in-process figures over HTTP and gRPC")
    return 0


if __name__ == "__main__":
    sys.exit(main())
