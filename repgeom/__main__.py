"""``python -m repgeom``: the command line."""

from repgeom.cli import main

raise SystemExit(main())
