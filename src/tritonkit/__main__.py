"""Entry point: `python -m tritonkit` (the same as the `tritonkit` console script)."""

import sys

from tritonkit.cli import main

sys.exit(main())
