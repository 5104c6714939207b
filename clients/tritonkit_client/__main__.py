"""`python -m tritonkit_client`: see `tritonkit_client.cli`."""

from tritonkit_client.cli import main

raise SystemExit(main())
