#!/usr/bin/env python3
"""Serve a repository on a real local tritonserver: `python build_scripts/serve_repository.py DIR`.

The same as `tritonkit serve`; the logic is in the installed `tritonkit` package.
"""

import sys

from tritonkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
