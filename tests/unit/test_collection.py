"""Every test module under tests/ is collected: no folder on its path matches pytest's
`norecursedirs` (pytest's default list holds `build`, which once hid tests/unit/build)."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]


def test_no_folder_of_tests_is_skipped_by_norecursedirs(pytestconfig: pytest.Config) -> None:
    patterns = pytestconfig.getini("norecursedirs")
    folders = {part for module in TESTS.rglob("test_*.py")
               for part in module.relative_to(TESTS).parent.parts}
    hidden = sorted(f"{folder} (norecursedirs {pattern!r})" for folder in folders
                    for pattern in patterns if fnmatch(folder, pattern))
    assert folders and hidden == []
