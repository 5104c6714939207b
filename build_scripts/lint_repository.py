#!/usr/bin/env python3
"""Lint any Triton model repository: `python build_scripts/lint_repository.py DIR [--release
YY.MM]`.

The same as `tritonkit lint`; the logic is in the installed `tritonkit` package.
"""

import sys

from tritonkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["lint", *sys.argv[1:]]))
