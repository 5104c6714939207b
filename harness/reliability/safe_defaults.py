"""Static checks of the safe defaults: loopback binding, restricted-API options, and no
unsafe loaders (yaml.load, pickle, np.load(allow_pickle=True), torch.load) in the source."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from tritonkit.server import (
    LOOPBACK,
    ApiRestriction,
    ServerOptions,
    ServerPorts,
    server_command,
)

# every folder of Python code in the checkout
PACKAGES = ("src", "clients", "build_scripts", "examples", "harness")


@dataclass(frozen=True, kw_only=True)
class Finding:
    path: str
    line: int
    problem: str


def _unsafe_call(node: ast.Call) -> str | None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
    keywords = {k.arg: k.value for k in node.keywords}
    if owner == "yaml" and name in {"load", "unsafe_load", "full_load", "load_all"}:
        return f"yaml.{name}: use yaml.safe_load"
    if owner in {"pickle", "cPickle", "dill", "joblib"} and name in {"load", "loads"}:
        return f"{owner}.{name} unpickles data"
    if owner == "torch" and name == "load":
        weights_only = keywords.get("weights_only")
        if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
            return "torch.load without weights_only=True unpickles data"
    allow = keywords.get("allow_pickle")
    if name == "load" and isinstance(allow, ast.Constant) and allow.value is True:
        return "np.load(allow_pickle=True) unpickles data"
    return None


def scan_unsafe_loading(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[Finding]:
    findings = []
    for package in packages:
        if not (root / package).is_dir():
            raise FileNotFoundError(f"{root / package}: no such folder to scan")
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                    if any(n.split(".")[0] in {"pickle", "cPickle", "dill"} for n in names):
                        findings.append(Finding(path=str(path.relative_to(root)),
                                                line=node.lineno, problem="imports pickle"))
                elif isinstance(node, ast.Call):
                    problem = _unsafe_call(node)
                    if problem is not None:
                        findings.append(Finding(path=str(path.relative_to(root)),
                                                line=node.lineno, problem=problem))
    return findings


def loopback_problems(options: ServerOptions | None = None) -> list[str]:
    """Every listener address of the local server's command line that is not loopback."""
    command = server_command(options or ServerOptions(), server=Path("tritonserver"),
                             repository=Path("repo"), backend_dir=Path("backends"),
                             ports=ServerPorts(http=1, grpc=2, metrics=3))
    addresses = [a.split("=", 1)[1] for a in command if a.split("=", 1)[0].endswith("-address")]
    problems = [f"listener bound to {a}" for a in addresses if a != LOOPBACK]
    if len(addresses) < 3:
        problems.append(f"only {len(addresses)} of 3 listeners have an explicit address")
    return problems


def restriction_args_example() -> list[str]:
    return ApiRestriction.for_exposure(header="admin-key", value="change-me-secret").server_args()
