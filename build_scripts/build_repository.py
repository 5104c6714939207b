#!/usr/bin/env python3
"""Build a Triton model repository from a spec: `python build_scripts/build_repository.py --spec
models.yaml --target auto --out DIR`.

The same as `tritonkit build`; the logic is in the installed `tritonkit` package.
"""

import sys

from tritonkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["build", *sys.argv[1:]]))
