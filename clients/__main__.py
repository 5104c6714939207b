"""`python -m clients`: see `clients.cli`."""

from clients.cli import main

raise SystemExit(main())
