"""Package metadata (both distributions) takes ranges; constraints.txt pins the tested set, inside
those ranges."""

from __future__ import annotations

from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
PROJECTS = (ROOT / "pyproject.toml", ROOT / "clients" / "pyproject.toml")
OWN = {"tritonkit", "tritonkit-client"}  # this repository's distributions, installed from it


def _requirements() -> list[Requirement]:
    listed: list[str] = []
    for path in PROJECTS:
        project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
        listed.extend(project["dependencies"])
        for extra in project.get("optional-dependencies", {}).values():
            listed.extend(extra)
    requirements = [Requirement(text) for text in listed]
    return [r for r in requirements if canonicalize_name(r.name) not in OWN]


def _pins() -> dict[str, str]:
    pins = {}
    for raw in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not name==version"
            pins[canonicalize_name(name)] = version
    return pins


def test_package_metadata_takes_ranges_not_exact_pins() -> None:
    exact = [str(r) for r in _requirements() if any(s.operator == "==" for s in r.specifier)]
    assert exact == []


def test_every_requirement_is_pinned_inside_its_range() -> None:
    pins = _pins()
    for requirement in _requirements():
        name = canonicalize_name(requirement.name)
        if name == "setuptools":  # pip freeze leaves it out; the range alone decides
            continue
        assert name in pins, f"{requirement.name} has no pin in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pins[name]}, outside {requirement}")
