"""`tritonkit {build,lint,serve,build-backend,tune}`: parses arguments and calls the library."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tritonkit.build.build_stamp import BuildStamp, default_cache_dir
from tritonkit.build.targets import resolve_target
from tritonkit.errors import ToolkitError, TuningError
from tritonkit.spec import Target, applicable_overlay, load_overlay, load_spec

if TYPE_CHECKING:
    from tritonkit.tuning import TuningResult

log = logging.getLogger("tritonkit")


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * verbosity if verbosity else logging.INFO
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)-7s %(message)s",
                        stream=sys.stderr)
    if verbosity < 2:  # keep third-party chatter out of the build output
        for noisy in ("onnxruntime", "polygraphy", "PIL"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _target_release(args: argparse.Namespace) -> str | None:
    """--release, else the project's pin (docker/versions.env beside the spec), else None."""
    from tritonkit.releases import pinned_release  # noqa: PLC0415

    if args.release is not None:
        return str(args.release)
    pinned = pinned_release(Path(args.spec).resolve().parent)
    if pinned is None:
        log.debug("no --release and no docker/versions.env beside %s: TensorRT options are not "
                 "checked against a release", args.spec)
    return pinned


def _build(args: argparse.Namespace) -> int:
    release = _target_release(args)
    spec = load_spec(args.spec, release=release)  # a bad spec fails before the target probe
    overlay = load_overlay(args.overlay) if args.overlay else None
    target = resolve_target(Target(args.target))
    overlay = applicable_overlay(overlay, requested=Target(args.target), resolved=target)
    if overlay is not None:
        spec = load_spec(args.spec, release=release, overlay=overlay)
    if not args.check:
        # The up-to-date check avoids importing ONNX, ONNX Runtime and protobuf at all.
        stamp = BuildStamp.for_build(spec, target=target, out=args.out,
                                     cache_dir=args.cache_dir or default_cache_dir(spec),
                                     skip_plans=args.no_plans)
        if stamp.up_to_date():
            print(f"{args.out} is up to date (target {target.value})")
            return 0
    from rich.console import Console  # noqa: PLC0415

    from tritonkit.build.builder import build_repository  # noqa: PLC0415
    from tritonkit.build.repository_check import check_repository  # noqa: PLC0415

    if args.check:
        if not args.verbose:
            logging.getLogger("tritonkit").setLevel(logging.WARNING)
        diffs = check_repository(spec, target=target, repository=args.out,
                                 cache_dir=args.cache_dir, release=release, on_gate=print)
        for diff in diffs:
            print(diff)
        if diffs:
            print(f"CheckFailed: {args.out} differs from {args.spec} in {len(diffs)} place(s); "
                  f"regenerate with: tritonkit build --spec {args.spec} "
                  f"--target {args.target} --out {args.out}", file=sys.stderr)
            return 1
        print(f"{args.out} is equal to what {args.spec} generates (target {target.value})")
        return 0
    with Console(stderr=True).status("building…") as status:

        def show(message: str) -> None:
            status.update(message)
            log.info("%s", message)

        result = build_repository(spec, target=target, out=args.out, cache_dir=args.cache_dir,
                                  skip_plans=args.no_plans, on_step=show, release=release)
    if result.up_to_date:
        print(f"{result.out} is up to date (target {result.target.value}, "
              f"{result.seconds:.2f} s)")
        return 0
    for model in result.models:
        print(f"  {model.name:<28} {model.kind:<12} {model.artifact or '-'}")
        if model.source:
            print(f"      source: {model.source}")
        if model.accuracy is not None:
            print(f"      accuracy gate: {model.accuracy.describe()}")
    print(f"built {len(result.models)} models into {result.out} "
          f"(target {result.target.value}) in {result.seconds:.1f} s")
    return 0


def _lint(args: argparse.Namespace) -> int:
    from tritonkit.repository.lint import format_problems, lint_repository  # noqa: PLC0415
    from tritonkit.tensorrt.compatibility import read_server_flags  # noqa: PLC0415

    capabilities = tuple(args.compute_capability) if args.compute_capability else None
    flags = read_server_flags(args.server_flags) if args.server_flags is not None else None
    problems = lint_repository(args.repository, release=args.release,
                               compute_capabilities=capabilities, server_flags=flags)
    errors = [p for p in problems if not p.warning]
    if problems:
        print(format_problems(problems))
    if errors:
        print(f"{len(errors)} problem(s) in {args.repository}", file=sys.stderr)
        return 1
    warnings = len(problems) - len(errors)
    print(f"{args.repository}: no problems" + (f" ({warnings} warning(s))" if warnings else ""))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from tritonkit.server.local_triton import serve_forever  # noqa: PLC0415

    return serve_forever(args.repository, http_port=args.http_port, grpc_port=args.grpc_port,
                         metrics_port=args.metrics_port, model_control=args.model_control,
                         on_ready=lambda urls: print(
                             f"Triton is ready: HTTP {urls.http}  gRPC {urls.grpc}  "
                             f"metrics {urls.metrics}  (Ctrl-C to stop)", flush=True))


def _build_backend(args: argparse.Namespace) -> int:
    from tritonkit.server.onnxruntime_backend import ensure_onnxruntime_backend  # noqa: PLC0415

    library = ensure_onnxruntime_backend(args.cache_dir, jobs=args.jobs)
    print(f"Triton's ONNX Runtime backend for the local server: {library}")
    return 0


def _tune_engine(args: argparse.Namespace) -> Callable[..., TuningResult]:
    """`tune_pipeline`, or Model Analyzer on `--model` alone with the `--grid` values."""
    from tritonkit.tuning import Knob, tune_model_with_model_analyzer, tune_pipeline  # noqa: PLC0415

    if args.engine == "perf-analyzer":
        if args.model or args.grid:
            raise TuningError("--model and --grid are options of --engine model-analyzer")
        return tune_pipeline
    if not args.model:
        raise TuningError("--engine model-analyzer profiles one model alone: give --model "
                          "(a native model of the pipeline)")
    grid: dict[Knob, tuple[int, ...]] = {}
    for item in args.grid or ():
        name, _, values = item.partition("=")
        try:
            grid[Knob(name)] = tuple(int(v) for v in values.split(","))
        except ValueError as e:
            raise TuningError(f"--grid {item!r}: expected KNOB=INT,INT,... with KNOB one of "
                              f"{', '.join(k.value for k in Knob)}") from e
    return functools.partial(tune_model_with_model_analyzer, model=args.model, grid=grid)


def _tune(args: argparse.Namespace) -> int:
    from tritonkit.tuning import (  # noqa: PLC0415
        Knob,
        SweepSettings,
        TuningRequest,
        input_data_from_files,
        tune_and_write,
    )

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="tritonkit-tune-"))
    input_data = args.input_data
    if args.files:
        patterns = dict(item.split("=", 1) for item in args.files)
        input_data = input_data_from_files(patterns, work / "input_data.json")
    if input_data is None:
        raise TuningError("give the pipeline's real inputs: --input-data FILE.json "
                          "(perf_analyzer's format) or --files INPUT=GLOB")
    base = load_overlay(args.overlay) if args.overlay.is_file() else None
    request = TuningRequest(
        spec_path=args.spec, pipeline=args.pipeline, input_data=input_data,
        budget_p99_ms=args.budget_p99_ms, work_dir=work, base_overlay=base,
        concurrencies=tuple(int(c) for c in args.concurrency.split(",")),
        min_gain=args.min_gain,
        knobs=frozenset(Knob(k) for k in args.knobs.split(",")) if args.knobs else frozenset(Knob),
        sweep=SweepSettings(measurement_interval_ms=args.interval_ms))
    result, report = tune_and_write(
        request, overlay_path=args.overlay, report_dir=args.report, tune=_tune_engine(args),
        on_trial=lambda t: print(f"  trial {t.number:>2}: {t.describe():<52} "
                                 f"{t.score.throughput:7.0f} infer/s at c={t.score.concurrency:<3}"
                                 f" p99 {t.score.p99_ms:6.1f} ms", flush=True))
    chosen = result.search.chosen
    print(f"chose trial {chosen.number}: {chosen.score.throughput:.0f} infer/s, p99 "
          f"{chosen.score.p99_ms:.1f} ms; overlay {args.overlay}, report {report}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tritonkit", description=__doc__)
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = p.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="build a Triton model repository from a spec")
    build.add_argument("--spec", type=Path, default=Path("models.yaml"))
    build.add_argument("--target", choices=[t.value for t in Target], default="auto")
    build.add_argument("--out", type=Path, required=True, help="repository directory")
    build.add_argument("--overlay", type=Path, default=None, metavar="FILE",
                       help="serving settings measured by `tritonkit tune` for this target")
    build.add_argument("--cache-dir", type=Path, default=None,
                       help="artifact cache (default: .cache/tritonkit beside the spec)")
    build.add_argument("--check", action="store_true",
                       help="regenerate into a temp dir and fail on any difference from --out")
    build.add_argument("--release", default=None, metavar="YY.MM",
                       help="NGC release whose TensorRT builds the plans: spec options it lacks "
                            "are refused (default: NGC_RELEASE of docker/versions.env beside "
                            "the spec)")
    build.add_argument("--no-plans", action="store_true",
                       help="tensorrt target: write everything but the plan binaries (what "
                            "model_repository/ commits; plans are built in the TensorRT container)")
    build.set_defaults(run=_build)

    lint = sub.add_parser("lint", help="check any Triton model repository")
    lint.add_argument("repository", type=Path)
    lint.add_argument("--release", default=None,
                      help="NGC release (YY.MM) whose TensorRT version plans must match")
    lint.add_argument("--compute-capability", action="append", default=None, metavar="X.Y",
                      help="a GPU compute capability the deployment declares (repeatable); "
                           "plans built for any other are refused")
    lint.add_argument("--server-flags", type=Path, default=None, metavar="FILE",
                      help="the serving tritonserver's flags file (docker/triton-server.flags); "
                           "plans needing a flag it lacks are refused")
    lint.set_defaults(run=_lint)

    serve = sub.add_parser("serve", help="serve a repository with a local tritonserver")
    serve.add_argument("repository", type=Path)
    serve.add_argument("--http-port", type=int, default=None)
    serve.add_argument("--grpc-port", type=int, default=None)
    serve.add_argument("--metrics-port", type=int, default=None)
    serve.add_argument("--model-control", choices=["none", "explicit", "poll"], default="none")
    serve.set_defaults(run=_serve)

    backend = sub.add_parser(
        "build-backend", help="build Triton's ONNX Runtime backend for the local server (cached)",
        description="Sources: $TRITONKIT_BACKEND_SOURCES and $TRITONKIT_ONNXRUNTIME_HEADERS, "
                    "else the r24.10 branches from GitHub. A cached build is reused.")
    backend.add_argument("--cache-dir", type=Path, default=None,
                         help="default: ~/.cache/tritonkit/onnxruntime-backend")
    backend.add_argument("--jobs", type=int, default=None, help="parallel compile jobs")
    backend.set_defaults(run=_build_backend)

    tune = sub.add_parser("tune", help="measure a pipeline's serving settings on the local "
                          "Triton under a p99 budget and write them as a spec overlay")
    tune.add_argument("--spec", type=Path, default=Path("models.yaml"))
    tune.add_argument("--pipeline", required=True)
    tune.add_argument("--input-data", type=Path, default=None, metavar="FILE.json",
                      help="the pipeline's real inputs in perf_analyzer's --input-data format")
    tune.add_argument("--files", action="append", default=None, metavar="INPUT=GLOB",
                      help="one BYTES row per file for INPUT (for example IMAGE='imgs/*.png')")
    tune.add_argument("--budget-p99-ms", type=float, required=True)
    tune.add_argument("--overlay", type=Path, default=Path("tuning/local.yaml"),
                      help="start from it when it exists, and write the result to it")
    tune.add_argument("--report", type=Path, required=True, metavar="DIR")
    tune.add_argument("--concurrency", default="1,2,4,8,16", metavar="LIST")
    tune.add_argument("--interval-ms", type=int, default=1500,
                      help="perf_analyzer's measurement window")
    tune.add_argument("--min-gain", type=float, default=0.05,
                      help="keep a change only when it beats the incumbent by this fraction")
    tune.add_argument("--knobs", default=None, metavar="LIST",
                      help="search only these: instance_count, intra_op_threads, "
                           "max_queue_delay_us, preferred_batch_sizes (default: all)")
    tune.add_argument("--work-dir", type=Path, default=None,
                      help="the repositories and perf_analyzer files (default: a new temp dir)")
    tune.add_argument("--engine", choices=["perf-analyzer", "model-analyzer"],
                      default="perf-analyzer",
                      help="perf-analyzer: the pipeline end to end, one knob at a time; "
                           "model-analyzer: NVIDIA Model Analyzer's grid over --model alone "
                           "(its own virtualenv: `make model-analyzer`)")
    tune.add_argument("--model", default=None,
                      help="model-analyzer engine: the native model of the pipeline to profile")
    tune.add_argument("--grid", action="append", default=None, metavar="KNOB=LIST",
                      help="model-analyzer engine: the values to try for one knob (repeatable; "
                           "e.g. instance_count=1,2); the others: the default engine's choices")
    tune.set_defaults(run=_tune)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return int(args.run(args))
    except ToolkitError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted: nothing was replaced", file=sys.stderr)
        return 130
