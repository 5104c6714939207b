#!/usr/bin/env python3
"""Readiness check of the serving container (standard library only; runs inside the image).

Exit 0 when `<url>/v2/health/ready` answers 200 and every model named by `--model` (or by the
comma-separated READY_MODELS environment variable) answers 200 on `/v2/models/<name>/ready`;
exit 1 otherwise, naming what is not ready. Used by the compose healthcheck, the image's
HEALTHCHECK and the Kubernetes readiness probe (one exec probe can check several models,
where an httpGet probe checks one path).
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.parse
import urllib.request


def _ok(url: str, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def not_ready(base_url: str, models: list[str], *, timeout_s: float) -> list[str]:
    """What is not ready: "server" and/or "model <name>" (empty when everything is)."""
    base = base_url.rstrip("/")
    missing = [] if _ok(f"{base}/v2/health/ready", timeout_s) else ["server"]
    for name in models:
        quoted = urllib.parse.quote(name, safe="")
        if not _ok(f"{base}/v2/models/{quoted}/ready", timeout_s):
            missing.append(f"model {name}")
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", action="append", default=[], help="repeat per model")
    parser.add_argument("--timeout-s", type=float, default=2.0)
    args = parser.parse_args(argv)
    models = list(args.model)
    models += [m.strip() for m in os.environ.get("READY_MODELS", "").split(",") if m.strip()]
    missing = not_ready(args.url, models, timeout_s=args.timeout_s)
    if missing:
        print("not ready: " + ", ".join(missing), file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
