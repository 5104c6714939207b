"""`tritonkit {build,lint,serve,build-backend}`: parses arguments and calls the library."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from tritonkit.build.build_stamp import BuildStamp, default_cache_dir
from tritonkit.build.targets import resolve_target
from tritonkit.errors import SpecError, ToolkitError
from tritonkit.spec import Target, load_overlay, load_spec

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
    target = resolve_target(Target(args.target))
    overlay = load_overlay(args.overlay) if args.overlay else None
    if overlay is not None and overlay.target is not target:
        raise SpecError(str(args.overlay), "target",
                        f"the overlay was measured for target {overlay.target.value!r}; this "
                        f"build is for {target.value!r} (leave --overlay out, or tune for it)")
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
