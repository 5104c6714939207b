"""`python -m demo`: build the example repository, serve it on a real local Triton, classify the
digits test split over HTTP and gRPC, and compare with the in-process result. Exits non-zero
when a served result differs from the in-process one."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from build_scripts.builder import build_repository
from build_scripts.errors import BuildError
from build_scripts.local_server.local_triton import LocalTriton
from build_scripts.spec import Target, load_spec
from clients import ClientError
from demo.digits import DigitsReport, run_digits
from model_zoo import ModelZooError
from model_zoo.digits import build_digits, encoded_split

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--spec", type=Path, default=Path("models.yaml"))
    parser.add_argument("--out", type=Path, default=Path("build/model_repository"))
    parser.add_argument("--target", choices=[t.value for t in Target], default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        with console.status("training/exporting the digits model (cached)…"):
            build_digits(args.spec.parent / "artifacts" / "digits")
        spec = load_spec(args.spec)
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
            with Progress(console=console, transient=True) as progress:
                tasks = {p: progress.add_task(f"classifying over {p}", total=len(images))
                         for p in ("HTTP", "gRPC")}
                report = run_digits(args.out, spec, server.urls, images=images, labels=labels,
                                    advance=lambda p, n: progress.advance(tasks[p], n))
        finally:
            with console.status("stopping the server…"):
                server.stop()
    except (BuildError, ClientError, ModelZooError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    _report(report)
    if not report.consistent:
        print("Mismatch: a served result differs from the in-process result", file=sys.stderr)
        return 1
    console.print("served accuracy equals in-process accuracy over HTTP and gRPC")
    return 0


if __name__ == "__main__":
    sys.exit(main())
